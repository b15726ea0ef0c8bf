package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCAConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErrs   []string
	}{
		{"defaults", "", nil},
		{"all keys", "ca:\n  inward_ttl: 5m\n  trusted_user_ca_keys: [/etc/ssh/ca.pub]\n  host_principals: [gate.example.com, gate]\n", nil},
		{"ttl too short", "ca:\n  inward_ttl: 1s\n", []string{"ca.inward_ttl:"}},
		{"ttl too long", "ca:\n  inward_ttl: 2h\n", []string{"ca.inward_ttl:"}},
		{"bad principal and file", "ca:\n  host_principals: [\"a,b\"]\n  trusted_user_ca_keys: [\"\"]\n", []string{"ca.host_principals:", "ca.trusted_user_ca_keys:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(f, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(f)
			if err == nil {
				err = c.Validate()
			}
			if len(tt.wantErrs) == 0 && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			for _, w := range tt.wantErrs {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
		})
	}
	if Defaults().CA.InwardTTL.D() != 2*time.Minute {
		t.Errorf("default inward_ttl %s, want 2m", Defaults().CA.InwardTTL.D())
	}
}

func TestGateHostPrincipals(t *testing.T) {
	for _, tt := range []struct {
		c    Config
		want []string
	}{
		{Config{Listen: "127.0.0.1:2222"}, []string{"127.0.0.1"}},
		{Config{Listen: "0.0.0.0:22"}, []string{"localhost"}},
		{Config{Listen: "[::1]:22"}, []string{"::1"}},
		{Config{Listen: ":22", Advertise: "gate.example.com:2222"}, []string{"gate.example.com"}},
		{Config{Listen: ":22", Advertise: "x", CA: CA{HostPrincipals: []string{"a", "b"}}}, []string{"a", "b"}},
	} {
		if got := tt.c.GateHostPrincipals(); !slices.Equal(got, tt.want) {
			t.Errorf("%+v: %v, want %v", tt.c, got, tt.want)
		}
	}
}

func TestKeysConfig(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"keys:\n  host_key_files: [/etc/sshgate/keys/ssh_host_ed25519_key]\n  user_ca_key_file: /etc/sshgate/keys/user_ca\n", ""},
		{"keys:\n  host_key_files: [keys/ssh_host_ed25519_key]\n", `keys.host_key_files: "keys/ssh_host_ed25519_key" is not an absolute path`},
		{"keys:\n  gate_key_file: /k/a\n  host_ca_key_file: /k/a\n", "keys.host_ca_key_file: /k/a is also keys.gate_key_file"},
		{"keys:\n  host_key_files: [\"\"]\n", "keys.host_key_files: empty file name"},
		{"keys:\n  totp_key: /k\n", "unknown key"},
	} {
		f := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(f, []byte(tt.yaml), 0o600)
		c, err := Load(f)
		if err == nil {
			err = c.Validate()
		}
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%q: %v, want %q", tt.yaml, err, tt.want)
		}
	}
	// check-config (and serve) name a configured key file that is missing.
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("keys:\n  host_key_files: [/nonexistent/ssh_host_ed25519_key]\n"), 0o600)
	if _, err := Check(f, nil); err == nil || !strings.Contains(err.Error(), "keys.host_key_files: /nonexistent/ssh_host_ed25519_key: cannot read") {
		t.Errorf("missing file: %v", err)
	}
}
