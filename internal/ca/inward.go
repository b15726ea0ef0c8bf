package ca

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/sshkeys"
)

// InwardBackdate is how far in the past an inward certificate becomes valid,
// so a target whose clock runs a little behind the gate's accepts it.
const InwardBackdate = 30 * time.Second

// Inward is a certificate the gate logs in to one target with.
type Inward struct {
	Signer ssh.Signer // the certificate signer, backed by an ephemeral key that never leaves memory
	Cert   *ssh.Certificate
}

// SignInward makes an ephemeral ed25519 key and a user certificate for it:
// principal login, valid from InwardBackdate ago for ttl, permit-pty always,
// permit-port-forwarding only when forwarding, permit-agent-forwarding only
// when agent; never X11 forwarding or user rc.
func (c *CA) SignInward(login, keyID string, ttl time.Duration, forwarding, agent bool) (*Inward, error) {
	if c == nil || c.User == nil {
		return nil, ErrNoCA
	}
	if login == "" {
		return nil, errors.New("sign inward certificate: no login")
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sign inward certificate: generate key: %w", err)
	}
	key, err := ssh.NewSignerFromSigner(priv)
	if err != nil {
		return nil, fmt.Errorf("sign inward certificate: %w", err)
	}
	ext := map[string]string{ExtPermitPTY: ""}
	if forwarding {
		ext[ExtPermitPortForwarding] = ""
	}
	if agent {
		ext[ExtPermitAgentForwarding] = ""
	}
	cert, err := c.SignUser(UserCert{Key: key.PublicKey(), Principals: []string{login}, KeyID: keyID,
		TTL: ttl, Backdate: InwardBackdate, Extensions: ext})
	if err != nil {
		return nil, err
	}
	s, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		return nil, fmt.Errorf("sign inward certificate: %w", err)
	}
	return &Inward{Signer: s, Cert: cert}, nil
}

// HostCertError is a target host key the host CA does not vouch for: not a
// certificate, signed by another CA, for another name, expired, revoked.
// The user sees the same line as for a pinned key that does not match.
type HostCertError struct {
	Addr      string
	Principal string
	Presented string // type and fingerprint of what was presented
	Reason    string
}

func (e *HostCertError) Error() string {
	return fmt.Sprintf("host certificate refused for %s (principal %q, presented %s): %s", e.Addr, e.Principal, e.Presented, e.Reason)
}

// HostCertAlgorithms are the host key algorithms to ask a target for when
// it is verified through the host CA: certificates only.
var HostCertAlgorithms = []string{
	ssh.CertAlgoED25519v01,
	ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
}

// HostKeyCallback verifies a target's host certificate against the host
// CA: a host certificate signed by the host CA (exactly that key), naming
// principal, valid now, neither it nor its key nor the CA revoked.
func (t *Trust) HostKeyCallback(principal string) (ssh.HostKeyCallback, error) {
	if t == nil || t.own == nil || t.own.Host == nil {
		return nil, fmt.Errorf("verify host certificate: %w", ErrNoCA)
	}
	caKey := t.own.Host.PublicKey().Marshal()
	return func(addr string, remote net.Addr, key ssh.PublicKey) error {
		fail := func(format string, args ...any) error {
			return &HostCertError{Addr: addr, Principal: principal, Presented: key.Type() + " " + sshkeys.Fingerprint(key), Reason: fmt.Sprintf(format, args...)}
		}
		cert, ok := key.(*ssh.Certificate)
		if !ok {
			return fail("not a certificate")
		}
		rev, err := t.Revocations()
		if err != nil {
			return fail("revocation list unreadable: %v", err)
		}
		checker := &ssh.CertChecker{
			IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
				_, isCert := auth.(*ssh.Certificate)
				return !isCert && string(auth.Marshal()) == string(caKey)
			},
			IsRevoked: rev.Revoked,
			Clock:     t.now,
		}
		if len(cert.ValidPrincipals) == 0 {
			return fail("certificate has no principals")
		}
		if err := checker.CheckHostKey(net.JoinHostPort(principal, "22"), remote, key); err != nil {
			return fail("%s", strings.TrimPrefix(err.Error(), "ssh: "))
		}
		return nil
	}, nil
}

// HostPrincipal is the name a target's host certificate must carry: the
// configured one, else the host part of the address the gate dials.
func HostPrincipal(configured, addr string) string {
	if configured != "" {
		return configured
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// maxSourceAddresses bounds a source-address list.
const maxSourceAddresses = 256

// ParseSourceAddress reads a source-address critical option: a
// comma-separated list of addresses and CIDR prefixes.
func ParseSourceAddress(list string) ([]netip.Prefix, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("source-address is empty")
	}
	parts := strings.Split(list, ",")
	if len(parts) > maxSourceAddresses {
		return nil, fmt.Errorf("source-address lists more than %d entries", maxSourceAddresses)
	}
	out := make([]netip.Prefix, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if strings.Contains(p, "/") {
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				return nil, fmt.Errorf("source-address %q is not an address or CIDR prefix", p)
			}
			out = append(out, pfx.Masked())
			continue
		}
		a, err := netip.ParseAddr(p)
		if err != nil {
			return nil, fmt.Errorf("source-address %q is not an address or CIDR prefix", p)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// CheckSourceAddress reports whether addr (a *net.TCPAddr) is allowed by a
// source-address list. Anything unreadable is refused.
func CheckSourceAddress(list string, addr net.Addr) error {
	pfx, err := ParseSourceAddress(list)
	if err != nil {
		return err
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("source-address: cannot check a %T client address", addr)
	}
	ip, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return errors.New("source-address: client address unreadable")
	}
	ip = ip.Unmap()
	for _, p := range pfx {
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("source-address %q does not allow %s", list, ip)
}
