package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// ssh.banner reaches every client before authentication, as OpenSSH's
// Banner does (a client whose key is refused sees it too); menu.motd sits at
// the top of the menu, numbered and full-screen, once per login, and never
// reaches a session without a PTY.
func TestBannerAndMOTD(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	dir := t.TempDir()
	banner := filepath.Join(dir, "banner")
	os.WriteFile(banner, []byte("Authorized use only. Sessions are recorded.\n"), 0o644)
	motd := filepath.Join(dir, "motd")
	os.WriteFile(motd, []byte("Welcome to the lab.\nMaintenance \x1b[31mFriday\x1b[0m 18:00.\n"), 0o644)
	cfg := filepath.Join(dir, "sshgate.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("ssh:\n  banner: %s\nmenu:\n  motd: %s\n", banner, motd)), 0o600)
	w := menuWorld(t, "--config", cfg)

	r := harness.MustRun(t, w.alice.SSHTo("web-1", nil, "echo on-target"), nil, short)
	if r.Stdout != "on-target\n" || !strings.Contains(r.Stderr, "Authorized use only. Sessions are recorded.") {
		t.Errorf("banner: stdout %q stderr %q", r.Stdout, r.Stderr)
	}
	r = harness.MustRun(t, w.alice.SSHTo("", nil, "ls"), nil, short)
	if strings.Contains(r.Stdout, "Welcome") || strings.Contains(r.Stdout, "Authorized") {
		t.Errorf("banner or motd on the stdout of a gate command: %q", r.Stdout)
	}
	other, _ := harness.Keygen(t, t.TempDir(), "id_other")
	r = harness.Run(w.alice.WithKey(other).SSHTo("", nil, "true"), nil, short)
	if r.Code != 255 || !strings.Contains(r.Stderr, "Authorized use only.") {
		t.Errorf("refused key: exit %d stderr %q, want the banner before the refusal", r.Code, r.Stderr)
	}

	// The numbered menu (TERM=dumb): the motd above the targets, its escape
	// sequences dropped.
	s := startPTY(t, dumb(w.alice.SSHTo("", []string{"-tt"})), 24, 80)
	if !s.out.WaitFor("Choose a target", short) {
		t.Fatalf("no target prompt:\n%s", s.out.String())
	}
	out := s.out.String()
	if !strings.Contains(out, "Welcome to the lab.") || !strings.Contains(out, "Maintenance [31mFriday[0m 18:00.") ||
		strings.Index(out, "Welcome") > strings.Index(out, "Targets for alice") {
		t.Errorf("numbered menu without the motd above the targets:\n%q", out)
	}
	if strings.Contains(out, "\x1b[31m") {
		t.Error("the motd's escape sequence reached the terminal")
	}
	fmt.Fprint(s.ptmx, "q\r")
	select {
	case <-s.done:
	case <-time.After(short):
		t.Fatal("ssh did not exit after q")
	}

	// The full-screen menu.
	m := startTmuxSSH(t, w, "alice", 80, 24)
	screen := m.waitScreen(t, "GROUP", "Welcome to the lab.")
	lines := strings.Split(screen, "\n")
	if len(lines) < 4 || !strings.Contains(lines[2], "Welcome to the lab.") {
		t.Errorf("the motd is not under the title:\n%s", screen)
	}
}
