package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// Forwarding reach: where a permit's local forwards (ssh -L: direct-tcpip,
// and direct-streamlocal@openssh.com to a unix socket) may go. A grant's
// --forward-to entries are Dests. The gate never resolves or dials what a
// client names: the target does. So a request is matched on the literal host
// the client sent: an address against addresses and prefixes, a name against
// names (case-insensitively, one trailing dot ignored), never one against
// the other.

// Dest is one --forward-to entry: a unix socket path, or a host (a name,
// an address or a prefix) with a port range.
type Dest struct {
	Path   string       // an absolute, clean unix socket path; nothing else is set
	Name   string       // a host name, lower case, without a trailing dot
	Prefix netip.Prefix // an address (a full-length prefix) or a prefix; valid when Name and Path are ""
	Lo, Hi uint16       // the ports, inclusive (1-65535 for "*")
}

// maxDestLen bounds a --forward-to entry (a host name is at most 253
// bytes, a socket path 107).
const maxDestLen = 300

// ParseDest parses a --forward-to entry: HOST:PORT, where HOST is a name,
// an IP address or a CIDR prefix (IPv6 in brackets: [fd00::/8]:443) and
// PORT a number, a range LO-HI or *; or an absolute unix socket path. The
// error names what is wrong, without repeating the whole entry.
func ParseDest(spec string) (Dest, error) {
	if spec == "" {
		return Dest{}, errors.New("empty: want HOST:PORT or a unix socket path")
	}
	if len(spec) > maxDestLen {
		return Dest{}, fmt.Errorf("longer than %d bytes", maxDestLen)
	}
	if strings.HasPrefix(spec, "/") {
		return parsePath(spec)
	}
	host, port, err := net.SplitHostPort(spec)
	if err != nil {
		return Dest{}, errors.New("want HOST:PORT (an IPv6 host in brackets) or an absolute unix socket path")
	}
	var d Dest
	if d.Lo, d.Hi, err = parsePorts(port); err != nil {
		return Dest{}, err
	}
	switch {
	case host == "":
		return Dest{}, errors.New("no host before the port")
	case strings.Contains(host, "/"):
		p, err := netip.ParsePrefix(host)
		if err != nil {
			return Dest{}, fmt.Errorf("%s is not a CIDR prefix", printable(host))
		}
		if p.Addr().Is4In6() {
			return Dest{}, fmt.Errorf("%s: write an IPv4 prefix as A.B.C.D/N", printable(host))
		}
		if p != p.Masked() {
			return Dest{}, fmt.Errorf("%s has bits set after the prefix length (did you mean %s?)", printable(host), p.Masked())
		}
		d.Prefix = p
	default:
		if a, err := netip.ParseAddr(host); err == nil {
			switch {
			case a.Zone() != "":
				return Dest{}, fmt.Errorf("%s: an address with a zone cannot be allowed", printable(host))
			case a.Is4In6():
				return Dest{}, fmt.Errorf("%s: write an IPv4 address as A.B.C.D", printable(host))
			}
			d.Prefix = netip.PrefixFrom(a, a.BitLen())
			break
		}
		name, ok := hostName(host)
		if !ok {
			return Dest{}, fmt.Errorf("%s is not an IP address, a CIDR prefix or a host name", printable(host))
		}
		d.Name = name
	}
	return d, nil
}

func parsePath(p string) (Dest, error) {
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return Dest{}, errors.New("the socket path has a control character")
		}
	}
	switch {
	case len(p) > 107: // sun_path holds 108 bytes with the NUL
		return Dest{}, errors.New("the socket path is longer than 107 bytes")
	case p == "/":
		return Dest{}, errors.New("/ is not a socket path")
	case path.Clean(p) != p:
		return Dest{}, fmt.Errorf("%s is not a clean path (did you mean %s?)", printable(p), printable(path.Clean(p)))
	}
	return Dest{Path: p}, nil
}

// parsePorts reads a port, a range LO-HI or *.
func parsePorts(s string) (lo, hi uint16, err error) {
	if s == "*" {
		return 1, 65535, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(a); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parsePort(b); err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("port range %d-%d is empty", lo, hi)
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	bad := fmt.Errorf("%s is not a port: want 1-65535, a range such as 8000-8099, or *", printable(s))
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, bad
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, bad
	}
	return uint16(n), nil
}

// hostName returns s as a name a destination may match: lower case, one
// trailing dot dropped, labels of letters, digits, '-' and '_', and a last
// label that starts with a letter, so that no name is a number the target's
// resolver might read as an address (2852039166, 0xa9fea9fe, 10.1).
func hostName(s string) (string, bool) {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if s == "" || len(s) > 253 {
		return "", false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	if last := labels[len(labels)-1]; last[0] < 'a' || last[0] > 'z' {
		return "", false
	}
	return s, true
}

// String is the canonical spelling of d, as ParseDest reads it back.
func (d Dest) String() string {
	if d.Path != "" {
		return d.Path
	}
	host := d.Name
	if host == "" {
		if d.Prefix.IsSingleIP() {
			host = d.Prefix.Addr().String()
		} else {
			host = d.Prefix.String()
		}
	}
	port := strconv.Itoa(int(d.Lo))
	switch {
	case d.Lo == 1 && d.Hi == 65535:
		port = "*"
	case d.Lo != d.Hi:
		port += "-" + strconv.Itoa(int(d.Hi))
	}
	return net.JoinHostPort(host, port)
}

// allowsTCP reports whether a direct-tcpip request for host and port (as
// the client sent them) is inside d.
func (d Dest) allowsTCP(host string, port uint32) bool {
	if d.Path != "" || port < uint32(d.Lo) || port > uint32(d.Hi) {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap() // ::ffff:10.0.0.1 is where 10.0.0.1 is
		return d.Name == "" && a.Zone() == "" && d.Prefix.Contains(a)
	}
	name, ok := hostName(host)
	return ok && d.Name != "" && name == d.Name
}

// Reach is where a permit's local forwards may go. The zero value reaches
// nothing.
type Reach struct {
	// AnyTCP: a forwarding grant without --forward-to, or the config
	// webhook's forwarding: any host and port. Never a unix socket.
	AnyTCP bool
	To     []Dest
}

// TCP reports whether a direct-tcpip request for host:port is allowed.
func (r Reach) TCP(host string, port uint32) bool {
	if port < 1 || port > 65535 {
		return false
	}
	if r.AnyTCP {
		return true
	}
	for _, d := range r.To {
		if d.allowsTCP(host, port) {
			return true
		}
	}
	return false
}

// Socket reports whether a direct-streamlocal@openssh.com request for the
// unix socket p is allowed: only a --forward-to naming exactly that path
// allows one (the path as the client sent it: no cleaning, no symlinks
// followed).
func (r Reach) Socket(p string) bool {
	for _, d := range r.To {
		if d.Path != "" && d.Path == p {
			return true
		}
	}
	return false
}

// add widens r by a forwarding grant's --forward-to entries: none means any
// TCP destination. An entry that does not parse (the CLI never stores one)
// allows nothing.
func (r *Reach) add(forwardTo []string) {
	if len(forwardTo) == 0 {
		r.AnyTCP = true
		return
	}
	for _, s := range forwardTo {
		if d, err := ParseDest(s); err == nil {
			r.To = append(r.To, d)
		}
	}
}

// printable shows part of an untrusted entry in an error message.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return strconv.Quote(string(b))
}
