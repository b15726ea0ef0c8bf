package config

import (
	"strings"
	"time"
)

// CA configures the gate's certificate authority (`sshgate ca init`).
type CA struct {
	// InwardTTL is how long the certificate the gate signs for each target
	// connection is valid.
	InwardTTL Duration `yaml:"inward_ttl"`
	// TrustedUserCAKeys are files of user CA public keys (sshd
	// TrustedUserCAKeys format) whose certificates users may log in with,
	// beside the gate's own user CA and `sshgate ca trust-user-ca`.
	TrustedUserCAKeys []string `yaml:"trusted_user_ca_keys"`
	// HostPrincipals name the gate in its own host certificate; default
	// the advertise host, else the listen host.
	HostPrincipals []string `yaml:"host_principals"`
}

// DefaultInwardTTL is ca.inward_ttl when unset.
const DefaultInwardTTL = 2 * time.Minute

func (c Config) validateCA(bad func(key, format string, args ...any)) {
	if d := c.CA.InwardTTL.D(); d < 10*time.Second || d > time.Hour {
		bad("ca.inward_ttl", "%s is out of range (10s to 1h)", d)
	}
	for _, f := range c.CA.TrustedUserCAKeys {
		if strings.TrimSpace(f) == "" {
			bad("ca.trusted_user_ca_keys", "empty file name")
		}
	}
	for _, p := range c.CA.HostPrincipals {
		if p == "" || strings.ContainsAny(p, ", \t\n") {
			bad("ca.host_principals", "%q is empty or has a comma or a space", p)
		}
	}
}

// GateHostPrincipals are the names in the gate's own host certificate:
// ca.host_principals, else the advertise host, else the listen host (when
// it is not a wildcard).
func (c Config) GateHostPrincipals() []string {
	if len(c.CA.HostPrincipals) > 0 {
		return c.CA.HostPrincipals
	}
	if h, _, ok := c.AdvertiseHostPort(); ok {
		return []string{h}
	}
	h := c.Listen
	if i := strings.LastIndex(h, ":"); i >= 0 {
		h = strings.Trim(h[:i], "[]")
	}
	switch h {
	case "", "0.0.0.0", "::":
		return []string{"localhost"}
	}
	return []string{h}
}
