package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// OIDC is auth.oidc: single sign-on through an OpenID Connect provider, by
// the OAuth 2.0 device authorization grant (RFC 8628) inside the SSH
// session. An empty issuer turns it off.
type OIDC struct {
	Issuer           string   `yaml:"issuer"`             // https URL (http only on loopback)
	ClientID         string   `yaml:"client_id"`          //
	ClientSecretFile string   `yaml:"client_secret_file"` // one line; optional for public clients
	CAFile           string   `yaml:"ca_file"`            // PEM roots for the provider's TLS; default: the system's
	Scopes           []string `yaml:"scopes"`             // must include openid
	UserClaim        string   `yaml:"user_claim"`         // the ID token claim naming the gate user
	GroupsClaim      string   `yaml:"groups_claim"`       // the claim listing the user's groups
	AllowedGroups    []string `yaml:"allowed_groups"`     // one of them required (empty: any)
	// AllowedEmailDomains: the email claim (verified) must be in one of
	// these domains (empty: any).
	AllowedEmailDomains []string    `yaml:"allowed_email_domains"`
	Grants              []OIDCGrant `yaml:"grants"`         // group -> env/target grants, synced at each sign-in
	AutoProvision       bool        `yaml:"auto_provision"` // create unknown users at their first sign-in
	// Offer: "unregistered" (users with neither key nor password on the
	// gate, and unknown users) or "all" (every user, beside their keys).
	Offer string `yaml:"offer"`
	// Reuse: after a device login, the same key from the same source
	// prefix logs in without a new sign-in for this long (0: off).
	Reuse        Duration `yaml:"reuse"`
	ReusePrefix4 int      `yaml:"reuse_prefix_v4"` // source prefix length the window is bound to (IPv4)
	ReusePrefix6 int      `yaml:"reuse_prefix_v6"` // (IPv6)
	// SecondFactor: a sign-in counts as the TOTP second factor (no code
	// asked after it). Off: a TOTP-enrolled user gives a code too.
	SecondFactor bool     `yaml:"second_factor"`
	LoginTimeout Duration `yaml:"login_timeout"` // how long a device sign-in may take, the SSH login included
	Timeout      Duration `yaml:"timeout"`       // one HTTP call to the provider
	CertTTL      Duration `yaml:"cert_ttl"`      // `ssh USER@gate cert`: certificate lifetime (0: the command is off)
}

// OIDCGrant grants members of Group an env or a target (exactly one).
type OIDCGrant struct {
	Group      string `yaml:"group"`
	Env        string `yaml:"env"`
	Target     string `yaml:"target"`
	Login      string `yaml:"login"`
	Forwarding bool   `yaml:"forwarding"`
}

// Enabled reports whether single sign-on is configured.
func (o OIDC) Enabled() bool { return o.Issuer != "" }

func defaultOIDC() OIDC {
	return OIDC{
		Scopes:       []string{"openid", "profile", "email"},
		UserClaim:    "preferred_username",
		GroupsClaim:  "groups",
		Offer:        "unregistered",
		ReusePrefix4: 32,
		ReusePrefix6: 64,
		LoginTimeout: Duration(5 * time.Minute),
		Timeout:      Duration(10 * time.Second),
		CertTTL:      Duration(time.Hour),
	}
}

var (
	oidcNameRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	oidcLoginRe = regexp.MustCompile(`^[a-z_][a-z0-9._-]{0,31}$`)
	claimRe     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$`)
)

func (c Config) validateOIDC(bad func(key, format string, args ...any)) {
	o := c.Auth.OIDC
	if !o.Enabled() {
		return
	}
	const k = "auth.oidc."
	if u, err := url.Parse(o.Issuer); err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		bad(k+"issuer", "%q is not an https:// URL", o.Issuer)
	} else if u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname())) {
		bad(k+"issuer", "%q: want https:// (http:// only on a loopback address)", o.Issuer)
	}
	if o.ClientID == "" {
		bad(k+"client_id", "required with auth.oidc.issuer")
	}
	if !contains(o.Scopes, "openid") {
		bad(k+"scopes", "must include openid")
	}
	for _, s := range o.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\n\"\\") {
			bad(k+"scopes", "%q is not a scope", s)
		}
	}
	if !claimRe.MatchString(o.UserClaim) {
		bad(k+"user_claim", "%q is not a claim name", o.UserClaim)
	}
	if !claimRe.MatchString(o.GroupsClaim) {
		bad(k+"groups_claim", "%q is not a claim name", o.GroupsClaim)
	}
	for _, g := range o.AllowedGroups {
		if g == "" {
			bad(k+"allowed_groups", "empty group name")
		}
	}
	for _, d := range o.AllowedEmailDomains {
		if d == "" || strings.ContainsAny(d, "@ \t") || strings.HasPrefix(d, ".") {
			bad(k+"allowed_email_domains", "%q is not a domain (write example.com, without @)", d)
		}
	}
	for i, g := range o.Grants {
		p := fmt.Sprintf("%sgrants[%d]", k, i)
		if g.Group == "" {
			bad(p+".group", "required")
		}
		switch {
		case (g.Env == "") == (g.Target == ""):
			bad(p, "exactly one of env and target")
		case g.Env != "" && !oidcNameRe.MatchString(g.Env):
			bad(p+".env", "%q is not an environment name", g.Env)
		case g.Target != "" && !oidcNameRe.MatchString(g.Target):
			bad(p+".target", "%q is not a target name", g.Target)
		}
		if g.Login != "" && !oidcLoginRe.MatchString(g.Login) {
			bad(p+".login", "%q is not a login name", g.Login)
		}
	}
	switch o.Offer {
	case "unregistered", "all":
	default:
		bad(k+"offer", "%q is not unregistered or all", o.Offer)
	}
	if d := o.Reuse.D(); d < 0 || d > 30*24*time.Hour {
		bad(k+"reuse", "%s is out of range (0 to 720h)", d)
	}
	if o.ReusePrefix4 < 8 || o.ReusePrefix4 > 32 {
		bad(k+"reuse_prefix_v4", "%d is out of range (8 to 32)", o.ReusePrefix4)
	}
	if o.ReusePrefix6 < 16 || o.ReusePrefix6 > 128 {
		bad(k+"reuse_prefix_v6", "%d is out of range (16 to 128)", o.ReusePrefix6)
	}
	if d := o.LoginTimeout.D(); d < 30*time.Second || d > 30*time.Minute {
		bad(k+"login_timeout", "%s is out of range (30s to 30m)", d)
	} else if d < c.Limits.LoginGrace.D() {
		bad(k+"login_timeout", "%s is shorter than limits.login_grace (%s)", d, c.Limits.LoginGrace.D())
	}
	if d := o.Timeout.D(); d < 100*time.Millisecond || d > time.Minute {
		bad(k+"timeout", "%s is out of range (100ms to 1m)", d)
	}
	if d := o.CertTTL.D(); d < 0 || d > 24*time.Hour {
		bad(k+"cert_ttl", "%s is out of range (0 to 24h)", d)
	}
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
