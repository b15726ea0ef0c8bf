package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDefenceValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"required", func(c *Config) { c.MFA.TOTP.Required = "sometimes" }, "mfa.totp.required"},
		{"grace", func(c *Config) { c.MFA.TOTP.Grace = Duration(-time.Second) }, "mfa.totp.grace"},
		{"allowlist", func(c *Config) { c.Penalties.Allowlist = []string{"10.0.0.0/33"} }, "penalties.allowlist"},
		{"allow addr", func(c *Config) { c.Penalties.Allowlist = []string{"10.1.2.3", "2001:db8::/64"} }, ""},
		{"max ban", func(c *Config) { c.Penalties.MaxBan = Duration(time.Second) }, "penalties.max_ban"},
		{"threshold", func(c *Config) { c.Penalties.Threshold = 0 }, "penalties.threshold"},
		{"authfail", func(c *Config) { c.Penalties.AuthFail = Duration(-1) }, "penalties.authfail"},
		{"handshake", func(c *Config) { c.Limits.Handshake = Duration(time.Hour) }, "limits.handshake"},
		{"account", func(c *Config) { c.Penalties.Account.Window = 0 }, "penalties.account.window"},
	} {
		cfg := Defaults()
		c.edit(&cfg)
		err := cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: Validate = %v, want %q", c.name, err, c.want)
		}
	}
	cfg := Defaults()
	cfg.Penalties.Allowlist = []string{"10.1.2.3", "2001:db8::1/64"}
	if got := fmt.Sprint(cfg.Penalties.AllowPrefixes()); got != "[10.1.2.3/32 2001:db8::/64]" {
		t.Errorf("AllowPrefixes = %s", got)
	}
}
