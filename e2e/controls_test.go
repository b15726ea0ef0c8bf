package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// Per-grant controls, each allowed and refused with the real ssh, scp (both
// modes), sftp and rsync against a real sshd: the refusal is one line on
// stderr and a non-zero exit status.
func TestGrantControls(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "scp", "sftp", "rsync")
	w := newWorld(t, worldOptions{})
	if w.gate == nil {
		t.Skip("direct mode: no gate")
	}
	user := func(name string, flags ...string) *harness.Client {
		c := w.gate.AddUser(t, name)
		w.gate.Admin(t, append([]string{"grant", name, "--target", "web-1", "--login", "root"}, flags...)...)
		return c
	}
	noShell := user("noshell", "--no-shell")
	noExec := user("noexec", "--no-exec")
	noSFTP := user("nosftp", "--no-sftp")
	noSCP := user("noscp", "--no-scp")
	noRsync := user("norsync", "--no-rsync")
	forced := user("forced", "--command", `echo "forced:$SSH_ORIGINAL_COMMAND"`)
	if out := w.gate.Admin(t, "grant", "list", "noexec"); !strings.Contains(out, "no-exec") {
		t.Errorf("grant list does not show the control: %q", out)
	}

	src := filepath.Join(t.TempDir(), "f.txt")
	os.WriteFile(src, []byte("payload\n"), 0o600)
	remote := t.TempDir()
	batch := filepath.Join(t.TempDir(), "batch")
	os.WriteFile(batch, []byte("put "+src+" "+remote+"/sftp.txt\n"), 0o600)

	refused := func(t *testing.T, what string, r harness.Result, line string, exact bool) {
		t.Helper()
		if r.Code == 0 || r.Err != nil {
			t.Errorf("%s: exit %d %v, want a refusal", what, r.Code, r.Err)
		}
		want := "sshgate: " + line
		if exact {
			if got := oneLine(t, what, r.Stderr); got != want {
				t.Errorf("%s: stderr %q, want %q", what, got, want)
			}
		} else if !strings.Contains(r.Stderr, want) {
			t.Errorf("%s: stderr %q, want %q", what, r.Stderr, want)
		}
	}
	ok := func(t *testing.T, what string, r harness.Result) {
		t.Helper()
		if r.Code != 0 || r.Err != nil {
			t.Errorf("%s: exit %d %v stderr %q, want success", what, r.Code, r.Err, r.Stderr)
		}
	}
	ssh := func(c *harness.Client, remote ...string) harness.Result {
		return harness.Run(c.SSHTo("web-1", nil, remote...), nil, short)
	}
	shell := func(c *harness.Client) harness.Result {
		return harness.Run(c.SSHTo("web-1", []string{"-T"}), []byte("echo shell-ran\n"), short)
	}
	scp := func(c *harness.Client, legacy bool, name string) harness.Result {
		args := []string{src, c.Dest("web-1") + ":" + filepath.Join(remote, name)}
		if legacy {
			args = append([]string{"-O"}, args...)
		}
		return harness.Run(c.SCP(args...), nil, short)
	}
	sftp := func(c *harness.Client) harness.Result {
		return harness.Run(c.SFTP("-b", batch, c.Dest("web-1")), nil, short)
	}
	rsync := func(c *harness.Client, name string) harness.Result {
		return harness.Run(c.Rsync(src, c.Dest("web-1")+":"+filepath.Join(remote, name)), nil, short)
	}

	t.Run("no-shell", func(t *testing.T) {
		refused(t, "shell", shell(noShell), "this grant does not allow a shell on web-1", true)
		ok(t, "exec", ssh(noShell, "true"))
		ok(t, "scp", scp(noShell, false, "ns.txt"))
	})
	t.Run("no-exec", func(t *testing.T) {
		refused(t, "exec", ssh(noExec, "echo", "hi"), "this grant does not allow commands on web-1", true)
		refused(t, "exec disguised as scp", ssh(noExec, "scp -t /tmp/x; echo hi"), "this grant does not allow commands on web-1", true)
		ok(t, "shell", shell(noExec))
		ok(t, "scp -O", scp(noExec, true, "ne-legacy.txt"))
		ok(t, "scp", scp(noExec, false, "ne.txt"))
		ok(t, "rsync", rsync(noExec, "ne-rsync.txt"))
		ok(t, "sftp", sftp(noExec))
	})
	t.Run("no-sftp", func(t *testing.T) {
		refused(t, "sftp", sftp(noSFTP), "this grant does not allow sftp on web-1", false)
		// OpenSSH 9's scp speaks SFTP unless -O: --no-sftp covers it.
		refused(t, "scp (sftp mode)", scp(noSFTP, false, "nsftp.txt"), "this grant does not allow sftp on web-1", false)
		ok(t, "scp -O", scp(noSFTP, true, "nsftp-legacy.txt"))
		if _, err := os.Stat(filepath.Join(remote, "nsftp.txt")); err == nil {
			t.Error("a refused scp wrote its file")
		}
	})
	t.Run("no-scp", func(t *testing.T) {
		refused(t, "scp -O", scp(noSCP, true, "nscp.txt"), "this grant does not allow scp on web-1", false)
		ok(t, "scp (sftp mode)", scp(noSCP, false, "nscp-sftp.txt"))
		ok(t, "exec", ssh(noSCP, "true"))
	})
	t.Run("no-rsync", func(t *testing.T) {
		refused(t, "rsync", rsync(noRsync, "nr.txt"), "this grant does not allow rsync on web-1", false)
		ok(t, "scp", scp(noRsync, true, "nr-scp.txt"))
	})
	t.Run("command", func(t *testing.T) {
		r := ssh(forced, "echo", "asked")
		ok(t, "exec", r)
		if got := strings.TrimSpace(r.Stdout); got != "forced:echo asked" {
			t.Errorf("forced command printed %q, want %q", got, "forced:echo asked")
		}
		r = shell(forced)
		ok(t, "shell", r)
		if got := strings.TrimSpace(r.Stdout); got != "forced:" {
			t.Errorf("forced command for a shell printed %q", got)
		}
	})
	for _, reason := range []string{"no_shell", "no_exec", "no_sftp", "no_scp", "no_rsync"} {
		if !harness.Eventually(short, func() bool { return auditHas(t, w.gate, "session.denied", reason) }) {
			t.Errorf("no session.denied audit event with reason %s", reason)
		}
	}
}

// auditHas reports whether the gate's audit file has an event of type typ
// with reason.
func auditHas(t *testing.T, g *harness.Gate, typ, reason string) bool {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(g.DataDir, "audit", "audit.jsonl"))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"type":"`+typ+`"`) && strings.Contains(l, `"reason":"`+reason+`"`) {
			return true
		}
	}
	return false
}

// The grant's time limits end a real PTY session (ssh -tt) with their line.
func TestGrantSessionLimits(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{})
	if w.gate == nil {
		t.Skip("direct mode: no gate")
	}
	user := func(name string, flags ...string) *harness.Client {
		c := w.gate.AddUser(t, name)
		w.gate.Admin(t, append([]string{"grant", name, "--target", "web-1", "--login", "root"}, flags...)...)
		return c
	}
	maxed := user("maxed", "--max-session", "3s")
	idle := user("idle", "--idle-timeout", "4s")
	t.Run("sessions", func(t *testing.T) {
		t.Run("max-session", func(t *testing.T) {
			t.Parallel()
			r := harness.Run(maxed.SSHTo("web-1", []string{"-tt"}, "sleep", "120"), nil, short)
			if r.Code == 0 || r.Err != nil {
				t.Errorf("exit %d %v, want non-zero", r.Code, r.Err)
			}
			if got := oneLine(t, "max-session", clientNoise(r.Stderr)); got != "sshgate: session ended: this grant allows sessions of at most 3s" {
				t.Errorf("stderr %q", got)
			}
		})
		t.Run("idle-timeout", func(t *testing.T) {
			t.Parallel()
			r := harness.Run(idle.SSHTo("web-1", []string{"-tt"}, "sleep", "120"), nil, short)
			if r.Code == 0 || r.Err != nil {
				t.Errorf("exit %d %v, want non-zero", r.Code, r.Err)
			}
			lines := strings.Split(strings.TrimSpace(clientNoise(r.Stderr)), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "sshgate: no input for ") || !strings.HasSuffix(lines[0], "without input") ||
				lines[1] != "sshgate: session ended: no input for 4s" {
				t.Errorf("stderr %q, want the warning then the end", r.Stderr)
			}
		})
	})
	limitsAudited(t, w)
}

func limitsAudited(t *testing.T, w *world) {
	for _, reason := range []string{"max_session", "idle_timeout"} {
		if !harness.Eventually(10*time.Second, func() bool { return auditHas(t, w.gate, "session.end", reason) }) {
			b, _ := os.ReadFile(filepath.Join(w.gate.DataDir, "audit", "audit.jsonl"))
			t.Errorf("no session.end audit event with reason %s in\n%s", reason, b)
		}
	}
}

// The idle timeout in a real terminal (tmux): typing keeps the session,
// the warning comes first, and after it a keystroke still counts as input;
// silence then ends the session with its line and a non-zero exit.
func TestIdleTimeoutTmux(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	harness.RequireTools(t, "tmux")
	w := newWorld(t, worldOptions{})
	w.gate.Admin(t, "revoke", "alice", "--target", "web-1")
	w.gate.Admin(t, "grant", "alice", "--target", "web-1", "--login", "root", "--idle-timeout", "6s")
	m := startTmuxSSH(t, w, "alice+web-1", 100, 30)
	m.keys(t, "-l", "echo typed-$((20+22))")
	m.keys(t, "Enter")
	m.waitScreen(t, "typed-42")
	m.waitScreen(t, "sshgate: no input for ")
	m.keys(t, "-l", "echo still-$((40+2))")
	m.keys(t, "Enter")
	s := m.waitScreen(t, "still-42")
	if strings.Contains(s, "session ended") {
		t.Fatalf("the session ended although the user typed after the warning:\n%s", s)
	}
	if code := m.exited(t); code == 0 {
		t.Errorf("idle session: ssh exited 0")
	}
	s = m.screen(t)
	if !strings.Contains(s, "sshgate: session ended: no input for 6s") {
		t.Errorf("no end line on the terminal:\n%s", s)
	}
	if !harness.Eventually(10*time.Second, func() bool { return auditHas(t, w.gate, "session.end", "idle_timeout") }) {
		t.Error("no session.end audit event with reason idle_timeout")
	}
}
