package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOIDCConfig(t *testing.T) {
	base := "auth:\n  oidc:\n    issuer: https://id.example.com\n    client_id: sshgate\n"
	tests := []struct {
		name, yaml string
		wantErrs   []string
	}{
		{"off by default", "", nil},
		{"minimal", base, nil},
		{"full", base + "    scopes: [openid, email, groups]\n    user_claim: email_local\n    groups_claim: roles\n    allowed_groups: [staff]\n" +
			"    allowed_email_domains: [example.com]\n    grants:\n      - group: devs\n        env: dev\n        login: deploy\n      - group: dba\n        target: db-1\n        forwarding: true\n" +
			"    auto_provision: true\n    offer: all\n    reuse: 8h\n    reuse_prefix_v4: 24\n    reuse_prefix_v6: 56\n    second_factor: true\n    login_timeout: 10m\n    cert_ttl: 30m\n", nil},
		{"loopback http", "auth:\n  oidc:\n    issuer: http://127.0.0.1:9000/oidc\n    client_id: x\n", nil},
		{"plain http", "auth:\n  oidc:\n    issuer: http://id.example.com\n    client_id: x\n", []string{"auth.oidc.issuer:", "https"}},
		{"no client id", "auth:\n  oidc:\n    issuer: https://id.example.com\n", []string{"auth.oidc.client_id:"}},
		{"no openid scope", base + "    scopes: [email]\n", []string{"auth.oidc.scopes:", "openid"}},
		{"bad claim", base + "    user_claim: \"a b\"\n", []string{"auth.oidc.user_claim:"}},
		{"grant both", base + "    grants:\n      - group: g\n        env: dev\n        target: web\n", []string{"auth.oidc.grants[0]:", "exactly one"}},
		{"grant no group", base + "    grants:\n      - env: dev\n", []string{"auth.oidc.grants[0].group:"}},
		{"grant bad env", base + "    grants:\n      - group: g\n        env: Dev!\n", []string{"auth.oidc.grants[0].env:"}},
		{"bad offer", base + "    offer: some\n", []string{"auth.oidc.offer:"}},
		{"reuse range", base + "    reuse: 1000h\n", []string{"auth.oidc.reuse:"}},
		{"prefix range", base + "    reuse_prefix_v4: 40\n", []string{"auth.oidc.reuse_prefix_v4:"}},
		{"login timeout short", base + "    login_timeout: 10s\n", []string{"auth.oidc.login_timeout:"}},
		{"login timeout under grace", "limits:\n  login_grace: 5m\n" + base + "    login_timeout: 1m\n", []string{"shorter than limits.login_grace"}},
		{"bad domain", base + "    allowed_email_domains: [\"@example.com\"]\n", []string{"auth.oidc.allowed_email_domains:"}},
		{"unknown key", base + "    clientid: x\n", []string{"clientid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(f, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Check(f, nil)
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErrs)
			}
			for _, w := range tt.wantErrs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestOIDCSecretFileChecked(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	y := "auth:\n  oidc:\n    issuer: https://id.example.com\n    client_id: x\n    client_secret_file: /nonexistent/secret\n"
	if err := os.WriteFile(f, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Check(f, nil)
	if err == nil || !strings.Contains(err.Error(), "c.yaml:5: auth.oidc.client_secret_file: /nonexistent/secret: cannot read") {
		t.Fatalf("err = %v", err)
	}
}
