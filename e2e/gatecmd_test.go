package e2e_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

func TestGateCommands(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})

	t.Run("ls", func(t *testing.T) {
		t.Parallel()
		r := harness.MustRun(t, w.alice.SSHTo("", nil, "ls"), nil, short)
		if !strings.Contains(r.Stdout, "web-1") {
			t.Errorf("ls: no web-1 in %q", r.Stdout)
		}
		if strings.Contains(r.Stdout, "web-2") {
			t.Errorf("ls shows the ungranted web-2: %q", r.Stdout)
		}
	})

	t.Run("ls --json", func(t *testing.T) {
		t.Parallel()
		r := harness.MustRun(t, w.alice.SSHTo("", nil, "ls", "--json"), nil, short)
		var got []map[string]any
		if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
			t.Fatalf("ls --json: %v in %q", err, r.Stdout)
		}
		if len(got) != 1 {
			t.Fatalf("ls --json: want exactly web-1, got %v", got)
		}
		if got[0]["name"] != "web-1" || got[0]["env"] != "prod" {
			t.Errorf("ls --json entry: %v", got[0])
		}
		logins, _ := got[0]["logins"].([]any)
		if len(logins) != 1 || logins[0] != "root" {
			t.Errorf("ls --json logins: %v, want [root]", got[0]["logins"])
		}
	})

	t.Run("config", func(t *testing.T) {
		t.Parallel()
		r := harness.MustRun(t, w.alice.SSHTo("", nil, "config"), nil, short)
		for _, want := range []string{"Host web-1", "HostName", "Port", "User alice+web-1"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("config: no %q in\n%s", want, r.Stdout)
			}
		}
		if strings.Contains(r.Stdout, "web-2") {
			t.Errorf("config lists the ungranted web-2:\n%s", r.Stdout)
		}
		cfg := filepath.Join(t.TempDir(), "config")
		os.WriteFile(cfg, []byte(r.Stdout), 0o600)
		out := harness.MustRun(t, w.alice.SSHWithConfig(cfg, "web-1", "echo via-config"), nil, short)
		if out.Stdout != "via-config\n" {
			t.Errorf("ssh -F config web-1: %q", out.Stdout)
		}
	})

	t.Run("unknown command", func(t *testing.T) {
		t.Parallel()
		r := harness.Run(w.alice.SSHTo("", nil, "frobnicate"), nil, short)
		if r.Code != 2 || r.Err != nil {
			t.Errorf("unknown gate command: exit %d (%v), want 2; stderr %q", r.Code, r.Err, r.Stderr)
		}
		oneLine(t, "stderr", r.Stderr)
		if r.Stdout != "" {
			t.Errorf("unknown gate command wrote to stdout: %q", r.Stdout)
		}
	})

	t.Run("unknown and ungranted targets look the same", func(t *testing.T) {
		t.Parallel()
		unknown := harness.Run(w.alice.SSHTo("nosuch", nil, "true"), nil, short)
		ungranted := harness.Run(w.alice.SSHTo("web-2", nil, "true"), nil, short)
		for name, r := range map[string]harness.Result{"nosuch": unknown, "web-2": ungranted} {
			if r.Code != 1 || r.Err != nil {
				t.Errorf("target %s: exit %d (%v), want 1; stderr %q", name, r.Code, r.Err, r.Stderr)
			}
			want := `sshgate: target "` + name + `" not found or not permitted`
			if got := oneLine(t, name+" stderr", r.Stderr); got != want {
				t.Errorf("target %s: stderr %q, want %q", name, got, want)
			}
			if r.Stdout != "" {
				t.Errorf("target %s: stdout %q", name, r.Stdout)
			}
		}
		a := strings.ReplaceAll(unknown.Stderr, "nosuch", "X")
		b := strings.ReplaceAll(ungranted.Stderr, "web-2", "X")
		if a != b {
			t.Errorf("unknown and ungranted differ: %q vs %q", unknown.Stderr, ungranted.Stderr)
		}
	})
}
