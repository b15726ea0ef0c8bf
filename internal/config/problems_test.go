package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "sshgate.yaml")
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Every problem at once, in file order, each with its line and YAML path.
func TestCheckReportsEveryProblemWithItsLine(t *testing.T) {
	f := writeConfig(t, `listen: 127.0.0.1:99999
log:
  levle: debug
  format: xml
limits:
  max_auth_tries: lots
  login_grace: ten
docker:
  transport: tcp
  default_memory: 1GiB
metrics:
  listen: "127.0.0.1:http"
log:
  level: info
mfa:
  totp: [a, b]
`)
	_, err := Check(f, nil)
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("Check: %T %v, want Problems", err, err)
	}
	want := []string{
		f + ":1: listen: port \"99999\" is not a number from 0 to 65535",
		f + ":3: log.levle: unknown key (did you mean level?)",
		f + ":4: log.format: \"xml\" is not text or json",
		f + ":6: limits.max_auth_tries: want a whole number, got \"lots\"",
		f + ":7: limits.login_grace: \"ten\" is not a duration (use e.g. \"30s\", \"10m\")",
		f + ":9: docker.transport: \"tcp\" is not socket or exec",
		f + ":12: metrics.listen: port \"http\" is not a number from 0 to 65535",
		f + ":13: log: given twice (first at line 2)",
		f + ":16: mfa.totp: want a mapping of keys (required, grace, code_timeout, max_failures, failure_window, lockout), got a list",
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCheckFileLevelProblems(t *testing.T) {
	for _, tt := range []struct{ name, body, want string }{
		{"syntax", "log:\n  level: [\n", ":2: not valid YAML: did not find expected node content"},
		{"top level not a mapping", "- a\n- b\n", ":1: want a mapping of keys (listen, advertise, log,"},
		{"unknown top-level key far from any", "zzzzzzzzzz: 1\n", ":1: zzzzzzzzzz: unknown key (known here: listen, advertise,"},
	} {
		f := writeConfig(t, tt.body)
		_, err := Check(f, nil)
		if err == nil || !strings.Contains(err.Error(), f+tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, f+tt.want)
		}
	}
	_, err := Check("/nonexistent/sshgate.yaml", nil)
	if err == nil || err.Error() != "/nonexistent/sshgate.yaml: cannot read: no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
}

// An override from a flag is validated too, without a line.
func TestCheckAppliesOverrides(t *testing.T) {
	f := writeConfig(t, "listen: 127.0.0.1:2222\n")
	_, err := Check(f, func(c *Config) { c.Listen = "nope" })
	if err == nil || err.Error() != f+`: listen: "nope" is not HOST:PORT` {
		t.Fatalf("override: %v", err)
	}
	c, err := Check(f, nil)
	if err != nil || c.Listen != "127.0.0.1:2222" {
		t.Fatalf("good file: %v %q", err, c.Listen)
	}
	if _, err := Check("", nil); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestClosest(t *testing.T) {
	names := []string{"level", "format"}
	for key, want := range map[string]string{"levle": "level", "lvl": "level", "fromat": "format", "colour": "", "x": ""} {
		if got := closest(key, names); got != want {
			t.Errorf("closest(%q) = %q, want %q", key, got, want)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add("log:\n  level: debug\n")
	f.Add("listen: [\n")
	f.Add("a: &x {b: 1}\nc: *x\n")
	f.Add("docker:\n  deny_mounts: [/etc]\n  default_memory: 1GiB\n")
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Check(p, nil)
		if ps, ok := err.(Problems); err != nil && (!ok || len(ps) == 0) {
			t.Fatalf("Check returned %T %v", err, err)
		}
	})
}

// Files the configuration names are checked too: serve would stop on them.
func TestCheckNamedFiles(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ca.pub")
	if err := os.WriteFile(ok, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := writeConfig(t, "ca:\n  trusted_user_ca_keys: ["+ok+", "+dir+"/missing.pub]\naudit:\n  webhook:\n    url: https://audit.example/x\n    token_file: "+dir+"/token\n")
	_, err := Check(f, nil)
	want := f + ":2: ca.trusted_user_ca_keys: " + dir + "/missing.pub: cannot read: no such file or directory\n" +
		f + ":6: audit.webhook.token_file: " + dir + "/token: cannot read: no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}
