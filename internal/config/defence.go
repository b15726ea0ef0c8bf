package config

import (
	"net/netip"
	"time"
)

// The TOTP second factor and the brute-force and flood
// defences (mfa.totp.*, penalties.*, limits.handshake).

// MFA is the second factor.
type MFA struct {
	TOTP TOTP `yaml:"totp"`
}

// TOTP says who must give a code and how often.
type TOTP struct {
	// Required: "enrolled" (users with an active enrolment give a code),
	// "always" (users without one are refused where a code is due) or
	// "never" (TOTP off).
	Required string `yaml:"required"`
	// Grace: after a good code, new connections of the same user with the same
	// key from the same address need none for this long (0: a code every
	// connection). Envs and targets may say always, never or grace.
	Grace Duration `yaml:"grace"`
	// CodeTimeout is how long the user has to type a code once asked,
	// beyond limits.login_grace (OpenSSH's LoginGraceTime is 120 s).
	CodeTimeout   Duration `yaml:"code_timeout"`
	MaxFailures   int      `yaml:"max_failures"`   // wrong codes per account within failure_window ...
	FailureWindow Duration `yaml:"failure_window"` //
	Lockout       Duration `yaml:"lockout"`        // ... lock the account's second factor this long
}

// Penalties are per-source penalties (like OpenSSH's PerSourcePenalties) and
// per-account throttling.
type Penalties struct {
	Enabled       bool     `yaml:"enabled"`
	AuthFail      Duration `yaml:"authfail"`       // a connection that failed authentication
	NoAuth        Duration `yaml:"noauth"`         // a connection that left without trying
	GraceExceeded Duration `yaml:"grace_exceeded"` // a connection cut at limits.handshake or limits.login_grace
	Refused       Duration `yaml:"refused"`        // a connection refused over max_unauthenticated_per_source
	Threshold     Duration `yaml:"threshold"`      // penalty time left that turns into a ban
	Ban           Duration `yaml:"ban"`            // first ban; doubles with each repeat
	MaxBan        Duration `yaml:"max_ban"`
	Memory        Duration `yaml:"memory"`  // how long after a ban ends a new one counts as a repeat
	Refresh       Duration `yaml:"refresh"` // how often a gate reads bans back from the store
	Allowlist     []string `yaml:"allowlist"`
	Account       Account  `yaml:"account"`
}

// Account throttles password authentication per account (password spraying).
type Account struct {
	PasswordFailures int      `yaml:"password_failures"` // 0: off
	Window           Duration `yaml:"window"`
	Lockout          Duration `yaml:"lockout"`
}

func defaultMFA() MFA {
	return MFA{TOTP: TOTP{Required: "enrolled", CodeTimeout: Duration(2 * time.Minute), MaxFailures: 5,
		FailureWindow: Duration(15 * time.Minute), Lockout: Duration(15 * time.Minute)}}
}

func defaultPenalties() Penalties {
	return Penalties{
		Enabled:       true,
		AuthFail:      Duration(5 * time.Second),
		NoAuth:        Duration(time.Second),
		GraceExceeded: Duration(10 * time.Second),
		Refused:       Duration(2 * time.Second),
		Threshold:     Duration(30 * time.Second),
		Ban:           Duration(time.Minute),
		MaxBan:        Duration(time.Hour),
		Memory:        Duration(24 * time.Hour),
		Refresh:       Duration(2 * time.Second),
		// Loopback: local tools, and a reverse proxy on the same host without
		// PROXY protocol would otherwise get every user banned at once.
		Allowlist: []string{"127.0.0.1/32", "::1/128"},
		Account: Account{PasswordFailures: 20, Window: Duration(10 * time.Minute),
			Lockout: Duration(15 * time.Minute)},
	}
}

// AllowPrefixes parses penalties.allowlist (addresses or CIDRs); Validate
// has reported what does not parse.
func (p Penalties) AllowPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range p.Allowlist {
		if pr, err := netip.ParsePrefix(s); err == nil {
			out = append(out, pr.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return out
}

func (c Config) validateDefence(bad func(key, format string, args ...any)) {
	t := c.MFA.TOTP
	switch t.Required {
	case "enrolled", "always", "never":
	default:
		bad("mfa.totp.required", "%q is not enrolled, always or never", t.Required)
	}
	if t.Grace.D() < 0 || t.Grace.D() > 24*time.Hour {
		bad("mfa.totp.grace", "%s is out of range (0 to 24h)", t.Grace.D())
	}
	if t.CodeTimeout.D() < 0 || t.CodeTimeout.D() > 10*time.Minute {
		bad("mfa.totp.code_timeout", "%s is out of range (0 to 10m)", t.CodeTimeout.D())
	}
	if t.MaxFailures < 0 {
		bad("mfa.totp.max_failures", "%d must not be negative", t.MaxFailures)
	}
	if t.MaxFailures > 0 && (t.FailureWindow.D() <= 0 || t.Lockout.D() <= 0) {
		bad("mfa.totp.failure_window", "failure_window and lockout must be positive when max_failures is set")
	}
	p := c.Penalties
	for _, d := range []struct {
		key string
		v   Duration
	}{{"authfail", p.AuthFail}, {"noauth", p.NoAuth}, {"grace_exceeded", p.GraceExceeded}, {"refused", p.Refused}, {"memory", p.Memory}} {
		if d.v.D() < 0 {
			bad("penalties."+d.key, "%s must not be negative", d.v.D())
		}
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"threshold", p.Threshold}, {"ban", p.Ban}, {"max_ban", p.MaxBan}, {"refresh", p.Refresh}} {
		if d.v.D() <= 0 {
			bad("penalties."+d.key, "%s must be positive", d.v.D())
		}
	}
	if p.MaxBan.D() < p.Ban.D() {
		bad("penalties.max_ban", "%s is shorter than penalties.ban (%s)", p.MaxBan.D(), p.Ban.D())
	}
	for _, s := range p.Allowlist {
		if _, err := netip.ParsePrefix(s); err != nil {
			if _, err := netip.ParseAddr(s); err != nil {
				bad("penalties.allowlist", "%q is not an address or CIDR prefix", s)
			}
		}
	}
	a := p.Account
	if a.PasswordFailures < 0 {
		bad("penalties.account.password_failures", "%d must not be negative", a.PasswordFailures)
	}
	if a.PasswordFailures > 0 && (a.Window.D() <= 0 || a.Lockout.D() <= 0) {
		bad("penalties.account.window", "window and lockout must be positive when password_failures is set")
	}
	if h := c.Limits.Handshake.D(); h <= 0 || h > c.Limits.LoginGrace.D() {
		bad("limits.handshake", "%s must be positive and at most limits.login_grace", h)
	}
}
