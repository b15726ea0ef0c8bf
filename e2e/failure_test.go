package e2e_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

func TestTargetDown(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
	w.sshd.Stop()

	for _, flags := range [][]string{nil, {"-tt"}} {
		r := harness.Run(w.alice.SSHTo("web-1", flags, "echo should-not-run"), nil, short)
		if r.Code == 0 || r.Err != nil {
			t.Errorf("%v: exit %d (%v), want non-zero", flags, r.Code, r.Err)
		}
		line := oneLine(t, "stderr", clientNoise(r.Stderr))
		if !strings.HasPrefix(line, `sshgate: target "web-1" is unreachable`) {
			t.Errorf("%v: stderr %q, want `sshgate: target \"web-1\" is unreachable ...`", flags, line)
		}
		noGoError(t, "target down message", line)
		if strings.Contains(r.Stdout, "should-not-run") {
			t.Errorf("stdout %q", r.Stdout)
		}
	}
}

func TestUpstreamHostKeyChanged(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)

	w.sshd = w.sshd.Restart(t, true) // same port, new host key
	marker := filepath.Join(t.TempDir(), "ran")
	r := harness.Run(w.alice.SSHTo("web-1", nil, "touch "+marker), nil, short)
	if r.Code == 0 || r.Err != nil {
		t.Errorf("exit %d (%v), want non-zero", r.Code, r.Err)
	}
	line := oneLine(t, "stderr", r.Stderr)
	if !strings.Contains(strings.ToLower(line), "host key") {
		t.Errorf("stderr %q does not mention the host key", line)
	}
	noGoError(t, "host key message", line)
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the command ran on an upstream whose host key changed")
	}
}

// infinite is an endless reader counting what was read from it.
type infinite struct{ n atomic.Int64 }

func (r *infinite) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i)
	}
	r.n.Add(int64(len(p)))
	return len(p), nil
}

func TestNoLeakWhenClientKilledMidTransfer(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	// Warm up (first connection opens the store etc.), then take the baseline.
	harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
	harness.MustRun(t, w.alice.SSHTo("", nil, "ls"), nil, short)
	base := w.gate.WaitBaseline(t, w.gate.Stats(t), 0, time.Second)

	for i := 0; i < 5; i++ {
		in := &infinite{}
		cmd := w.alice.SSHTo("web-1", nil, "cat > /dev/null")
		cmd.Stdin = in
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if !harness.Eventually(short, func() bool { return in.n.Load() > 8<<20 }) {
			t.Errorf("transfer %d: only %d bytes in %s", i, in.n.Load(), short)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	// Downloads killed too, and a few clean sessions.
	for i := 0; i < 3; i++ {
		cmd := w.alice.SSHTo("web-1", nil, "cat /dev/zero")
		pr, pw := io.Pipe()
		cmd.Stdout = pw
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		io.CopyN(io.Discard, pr, 8<<20)
		cmd.Process.Signal(syscall.SIGKILL)
		pw.Close()
		cmd.Wait()
		harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
	}
	w.gate.WaitBaseline(t, base, 2, 30*time.Second)
	// The upstream sessions ended too: no cat left running on the sshd.
	if !harness.Eventually(30*time.Second, func() bool {
		return len(w.sshd.Processes("cat > /dev/null"))+len(w.sshd.Processes("cat /dev/zero")) == 0
	}) {
		t.Errorf("upstream cat still running after the clients were killed")
	}
}

// The target's session processes are killed under live sessions, in rounds
// of 4 (2 with a PTY): 40 resets in CI, 100 under SSHGATE_E2E_FULL=1. Each
// client ends with a non-zero exit and one line saying the target
// connection was lost; the gate's fds return to baseline and it serves on.
func TestNoLeakWhenUpstreamKilledMidSession(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
	harness.MustRun(t, w.alice.SSHTo("", nil, "ls"), nil, short)
	base := w.gate.WaitBaseline(t, w.gate.Stats(t), 0, time.Second)

	const n = 4
	rounds := count(10, 25)
	type sess struct {
		cmd    *exec.Cmd
		stderr *harness.Buffer
		done   chan struct{}
	}
	start := time.Now()
	for round := 0; round < rounds; round++ {
		var ss []sess
		for i := 0; i < n; i++ {
			marker := fmt.Sprintf("sleep 3%03d%d.5", round, i)
			flags := []string(nil)
			if i%2 == 1 {
				flags = []string{"-tt"}
			}
			cmd := w.alice.SSHTo("web-1", flags, marker)
			// A stdin that stays open (Wait closes it; it does not wait on it).
			if _, err := cmd.StdinPipe(); err != nil {
				t.Fatal(err)
			}
			s := sess{cmd, &harness.Buffer{}, make(chan struct{})}
			cmd.Stdout, cmd.Stderr = io.Discard, s.stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { cmd.Wait(); close(s.done) }()
			t.Cleanup(func() { cmd.Process.Kill(); <-s.done })
			ss = append(ss, s)
			if !harness.Eventually(short, func() bool { return len(w.sshd.Processes(marker)) > 0 }) {
				t.Fatalf("upstream never ran %q", marker)
			}
		}
		w.sshd.KillSessions(t)
		for i, s := range ss {
			select {
			case <-s.done:
				if s.cmd.ProcessState.ExitCode() == 0 {
					t.Errorf("round %d session %d: exit 0 after its upstream was killed", round, i)
				}
				line := oneLine(t, "stderr", strings.TrimSpace(clientNoise(s.stderr.String())))
				if want := `sshgate: connection to target "web-1" lost`; line != want {
					t.Errorf("round %d session %d: stderr %q, want %q", round, i, line, want)
				}
			case <-time.After(short):
				t.Errorf("round %d session %d: client still connected %s after its upstream was killed", round, i, short)
			}
		}
	}
	t.Logf("%d upstream resets under live sessions in %s", rounds*n, time.Since(start).Round(time.Millisecond))
	w.gate.WaitBaseline(t, base, 2, 30*time.Second)
	// The listener still serves new connections.
	harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
}

func TestAdminChangesWithoutRestart(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	refused := func(what, target string) {
		t.Helper()
		r := harness.Run(w.alice.SSHTo(target, nil, "echo in"), nil, short)
		if r.Code != 1 || strings.Contains(r.Stdout, "in") {
			t.Errorf("%s: exit %d stdout %q stderr %q, want refused with 1", what, r.Code, r.Stdout, r.Stderr)
		}
	}
	allowed := func(what, target string) {
		t.Helper()
		r := harness.Run(w.alice.SSHTo(target, nil, "echo in"), nil, short)
		if r.Code != 0 || r.Stdout != "in\n" {
			t.Errorf("%s: exit %d stdout %q stderr %q, want it to run", what, r.Code, r.Stdout, r.Stderr)
		}
	}
	refused("before the grant", "web-2")
	w.gate.Admin(t, "grant", "alice", "--target", "web-2", "--login", "root")
	allowed("after granting web-2", "web-2")

	// Revoke while the gate runs: the next connection is refused.
	w.gate.Admin(t, "revoke", "alice", "--target", "web-2")
	refused("after revoking web-2", "web-2")
	allowed("web-1 untouched", "web-1")

	// A key added while running works at once.
	key, _ := harness.Keygen(t, t.TempDir(), "id_alice2")
	w.gate.Admin(t, "key", "add", "alice", key+".pub")
	r := harness.Run(w.alice.WithKey(key).SSHTo("web-1", nil, "echo in"), nil, short)
	if r.Code != 0 || r.Stdout != "in\n" {
		t.Errorf("new key: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
}

// A target that is alive but hung (its processes stopped) never answers a
// channel close. When the user leaves, the gate must not wait for it: it
// closes the target connection, and its fds return to baseline at once
// rather than when TCP keepalive gives up minutes later.
func TestNoLeakWhenHungTargetAndClientLeaves(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
	base := w.gate.WaitBaseline(t, w.gate.Stats(t), 0, time.Second)

	cmd := w.alice.SSHTo("web-1", nil, "echo up; sleep 300")
	out := &harness.Buffer{}
	cmd.Stdout, cmd.Stderr = out, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !out.WaitFor("up", short) {
		t.Fatal("session never started")
	}
	// Freeze every process of the upstream sshd but the listener: the
	// per-connection privsep processes and the session.
	frozen := harness.Descendants(w.sshd.PID())
	for _, pid := range frozen {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	t.Cleanup(func() {
		for _, pid := range frozen {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	w.gate.WaitBaseline(t, base, 1, 10*time.Second)
}
