package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultsValid(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

func TestLoadAndValidate(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErrs   []string // substrings, each must appear
	}{
		{"empty file", "", nil},
		{"override", "listen: 0.0.0.0:22\nlimits:\n  login_grace: 10s\n", nil},
		{"advertise host", "advertise: gate.example.com\n", nil},
		{"advertise host:port", "advertise: gate.example.com:2222\n", nil},
		{"advertise bad", "advertise: \"gate.example.com:\"\n", []string{"advertise:"}},
		{"advertise url", "advertise: ssh://gate/x\n", []string{"advertise:"}},
		{"unknown key", "lissen: x\n", []string{"lissen"}},
		{"docker knobs", "docker:\n  allow_root: true\n  readonly_rootfs: true\n  deny_mounts: [/srv/secret]\n  default_memory: 512MiB\n  default_pids: 64\n  idle_ttl: 5m\n  pool_idle_ttl: 1h\n  agent_timeout: 20s\n  remove_timeout: 20s\n  open_timeout: 2m\n", nil},
		{"docker knobs bad", "docker:\n  transport: exec\n  readonly_rootfs: true\n  deny_mounts: [srv]\n  default_memory: 1MiB\n  default_pids: 0\n  agent_timeout: 0s\n",
			[]string{"docker.readonly_rootfs:", "docker.deny_mounts:", "docker.default_memory:", "docker.default_pids:", "docker.agent_timeout:"}},
		{"ports", "listen: \"127.0.0.1:65536\"\nadvertise: gate:0\nmetrics:\n  listen: \":-1\"\n", []string{"listen: port \"65536\"", "advertise: port \"0\"", "metrics.listen: port \"-1\""}},
		{"watch", "watch:\n  notice: \"an operator ({watcher}) is watching\"\n  notice_end: \"\"\n  backlog: 4KiB\n", nil},
		{"watch bad", "watch:\n  notice: \"two\\nlines\"\n  notice_end: \"\\e[31mred\"\n  backlog: 2MiB\n", []string{"watch.notice:", "watch.notice_end:", "watch.backlog:"}},
		{"bad duration", "limits:\n  login_grace: ten\n", []string{`"ten" is not a duration`}},
		{"every problem", "listen: nope\nlog:\n  level: loud\nssh:\n  ciphers: [3des-cbc]\nlimits:\n  max_auth_tries: 0\nenv_allow: [\"A=B\"]\n",
			[]string{"listen:", "log.level:", "ssh.ciphers:", `"3des-cbc"`, "limits.max_auth_tries:", "env_allow:"}},
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
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tt.wantErrs)
			}
			for _, w := range tt.wantErrs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestEnvAllowed(t *testing.T) {
	c := Defaults()
	for name, want := range map[string]bool{"LANG": true, "LC_ALL": true, "LC_CTYPE": true, "LD_PRELOAD": false, "BASH_ENV": false, "TERM": false, "PATH": false} {
		if got := c.EnvAllowed(name); got != want {
			t.Errorf("EnvAllowed(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestAdvertiseHostPort(t *testing.T) {
	for in, want := range map[string][3]string{
		"":             {"", "", "false"},
		"gate.example": {"gate.example", "22", "true"},
		"gate:2222":    {"gate", "2222", "true"},
		"[::1]:2222":   {"::1", "2222", "true"},
		"gate:":        {"", "", "false"},
	} {
		h, p, ok := Config{Advertise: in}.AdvertiseHostPort()
		if got := [3]string{h, p, map[bool]string{true: "true", false: "false"}[ok]}; got != want {
			t.Errorf("AdvertiseHostPort(%q) = %v, want %v", in, got, want)
		}
	}
}
