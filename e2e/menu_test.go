package e2e_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// With a PTY and no target, the gate lists the user's targets and connects
// the chosen one in the same session, without a second authentication.
func TestPTYMenuConnects(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	s := startPTY(t, dumb(w.alice.SSHTo("", []string{"-tt"})), 24, 80)
	if !s.out.WaitFor("Choose a target [1-1, q to quit]: ", short) {
		t.Fatal("no target prompt")
	}
	if out := s.out.String(); !strings.Contains(out, "1) web-1") || strings.Contains(out, "web-2") {
		t.Fatalf("menu should list web-1 only (web-2 is not granted): %q", out)
	}
	fmt.Fprint(s.ptmx, "7\r") // out of range: asked again
	if !s.out.WaitFor("Type a number from 1 to 1, or q.", short) {
		t.Fatal("an out-of-range choice was not refused")
	}
	fmt.Fprint(s.ptmx, "1\r")
	if !s.out.WaitFor("Connecting to web-1 as root", short) {
		t.Fatal("choosing 1 did not connect")
	}
	out := s.do(t, "stty size; tty")
	if !strings.Contains(out, "24 80") || !strings.Contains(out, "/dev/pts/") {
		t.Errorf("the chosen target's shell has no 24x80 pty: %q", out)
	}
	before := strings.Count(s.out.String(), "Choose a target")
	fmt.Fprint(s.ptmx, "exit 4\r")
	// menu.after_session defaults to menu: back to the list, same channel.
	if !harness.Eventually(short, func() bool { return strings.Count(s.out.String(), "Choose a target") > before }) {
		t.Fatal("no menu after the session ended")
	}
	fmt.Fprint(s.ptmx, "q\r")
	select {
	case <-s.done:
		if code := s.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("q after a session: ssh exited %d, want 0", code)
		}
	case <-time.After(short):
		t.Fatal("ssh did not exit after q")
	}
}

func TestPTYMenuQuit(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	s := startPTY(t, dumb(w.alice.SSHTo("", []string{"-tt"})), 24, 80)
	if !s.out.WaitFor("Choose a target", short) {
		t.Fatal("no target prompt")
	}
	fmt.Fprint(s.ptmx, "q\r")
	select {
	case <-s.done:
		if code := s.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("q: ssh exited %d, want 0", code)
		}
	case <-time.After(short):
		t.Fatal("ssh did not exit after q")
	}
}

// dumb makes ssh ask for a TERM=dumb pty: the numbered menu.
func dumb(cmd *exec.Cmd) *exec.Cmd {
	cmd.Env = append(cmd.Env, "TERM=dumb")
	return cmd
}

// Without a PTY and without a command, the gate answers with its usage.
func TestNoTargetNoPTYShell(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	r := harness.Run(w.alice.SSHTo("", []string{"-T"}), nil, short)
	if r.Code != 2 || r.Stdout != "" || !strings.HasPrefix(r.Stderr, "sshgate: usage:") {
		t.Errorf("ssh -T alice@gate: exit %d stdout %q stderr %q; want 2, nothing on stdout, usage on stderr", r.Code, r.Stdout, r.Stderr)
	}
}
