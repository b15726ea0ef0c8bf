package config

import (
	"net/netip"
	"time"
)

// ProxyProtocol is ssh.proxy_protocol: PROXY protocol (v1 and v2) headers
// from the load balancers in Trusted. A header from any other source is
// refused (the connection closed), so a client can never choose the
// address the gate's limits, bans, penalties and audit see.
type ProxyProtocol struct {
	// Trusted are the load balancers' source prefixes ("10.0.0.0/8",
	// "127.0.0.1/32"; a bare address means just it). Empty: PROXY protocol
	// off, and every header refused.
	Trusted []string `yaml:"trusted"`
	// Required: a connection from a trusted source without a header is
	// refused (default true: a balancer configured for the header always
	// sends one, so a missing one is a misconfiguration, and its clients
	// would all share the balancer's address). false: such a connection is
	// served under the balancer's own address.
	Required *bool `yaml:"required"`
	// HeaderTimeout bounds the wait for the header (default 5s, at most
	// limits.login_grace).
	HeaderTimeout Duration `yaml:"header_timeout"`
}

// Prefixes returns Trusted parsed (validated by Validate).
func (p ProxyProtocol) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range p.Trusted {
		if pf, ok := parsePrefix(s); ok {
			out = append(out, pf)
		}
	}
	return out
}

// HeaderRequired reports Required with its default.
func (p ProxyProtocol) HeaderRequired() bool { return p.Required == nil || *p.Required }

// Timeout returns HeaderTimeout with its default.
func (p ProxyProtocol) Timeout() time.Duration {
	if p.HeaderTimeout == 0 {
		return 5 * time.Second
	}
	return p.HeaderTimeout.D()
}

func parsePrefix(s string) (netip.Prefix, bool) {
	if pf, err := netip.ParsePrefix(s); err == nil {
		return pf.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), true
	}
	return netip.Prefix{}, false
}

func (p ProxyProtocol) validate(loginGrace time.Duration, bad func(key, format string, args ...any)) {
	for _, s := range p.Trusted {
		if _, ok := parsePrefix(s); !ok {
			bad("ssh.proxy_protocol.trusted", "%q is not an address or prefix such as 10.0.0.0/8", s)
		}
	}
	if d := p.HeaderTimeout.D(); d < 0 || d > 0 && d > loginGrace {
		bad("ssh.proxy_protocol.header_timeout", "%s is out of range (up to limits.login_grace)", d)
	}
	if len(p.Trusted) == 0 && (p.Required != nil || p.HeaderTimeout != 0) {
		bad("ssh.proxy_protocol", "required and header_timeout need trusted sources")
	}
}
