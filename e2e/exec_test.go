package e2e_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/sshgate/sshgate/e2e/harness"
)

func TestExec(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{})

	t.Run("exit codes", func(t *testing.T) {
		t.Parallel()
		for _, code := range []int{0, 1, 3, 42} {
			r := harness.Run(w.alice.SSHTo("web-1", nil, fmt.Sprintf("exit %d", code)), nil, short)
			if r.Err != nil || r.Code != code {
				t.Errorf("exit %d: got %d (%v), stderr %q", code, r.Code, r.Err, r.Stderr)
			}
		}
	})

	t.Run("stdout and stderr apart", func(t *testing.T) {
		t.Parallel()
		r := harness.Run(w.alice.SSHTo("web-1", nil, "echo out; echo err >&2; echo out2; exit 3"), nil, short)
		if r.Code != 3 || r.Stdout != "out\nout2\n" || r.Stderr != "err\n" {
			t.Errorf("got exit %d stdout %q stderr %q (%v)", r.Code, r.Stdout, r.Stderr, r.Err)
		}
	})

	t.Run("stdin EOF", func(t *testing.T) {
		t.Parallel()
		r := harness.MustRun(t, w.alice.SSHTo("web-1", nil, "wc -c"), []byte("0123456789abc"), short)
		if strings.TrimSpace(r.Stdout) != "13" {
			t.Errorf("wc -c printed %q, want 13", r.Stdout)
		}
		// Empty stdin: EOF at once.
		r = harness.MustRun(t, w.alice.SSHTo("web-1", nil, "wc -c"), []byte{}, short)
		if strings.TrimSpace(r.Stdout) != "0" {
			t.Errorf("wc -c on empty stdin printed %q, want 0", r.Stdout)
		}
	})

	t.Run("stdin 16 MiB through", func(t *testing.T) {
		t.Parallel()
		data := make([]byte, 16<<20)
		rand.NewChaCha8([32]byte{7}).Read(data)
		sum := sha256.Sum256(data)
		r := harness.MustRun(t, w.alice.SSHTo("web-1", nil, "sha256sum"), data, short)
		if got := strings.Fields(r.Stdout); len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
			t.Errorf("sha256sum upstream %q, want %x", r.Stdout, sum)
		}
		// And back: the bytes come out of stdout unchanged.
		r = harness.MustRun(t, w.alice.SSHTo("web-1", nil, "cat"), data, short)
		if !bytes.Equal([]byte(r.Stdout), data) {
			t.Errorf("cat returned %d bytes, not the %d sent", len(r.Stdout), len(data))
		}
	})

	t.Run("no banner on stdout", func(t *testing.T) {
		t.Parallel()
		r := harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
		if r.Stdout != "" || r.Stderr != "" {
			t.Errorf("`true` printed stdout %q stderr %q", r.Stdout, r.Stderr)
		}
	})
}

// ptySession runs ssh under a real pseudo-terminal and collects its output.
type ptySession struct {
	cmd  *exec.Cmd
	ptmx *os.File
	out  *harness.Buffer
	done chan error
	n    int
}

func startPTY(t *testing.T, cmd *exec.Cmd, rows, cols uint16) *ptySession {
	t.Helper()
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatalf("start under pty: %v", err)
	}
	s := &ptySession{cmd: cmd, ptmx: ptmx, out: &harness.Buffer{}, done: make(chan error, 1)}
	copied := make(chan struct{})
	go func() { io.Copy(s.out, ptmx); close(copied) }()
	go func() { err := cmd.Wait(); <-copied; s.done <- err }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		ptmx.Close()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
		}
		if t.Failed() {
			t.Logf("pty output:\n%s", s.out.String())
		}
	})
	return s
}

// do types a command line and waits for its marker; it returns the output
// between the previous position and the marker.
func (s *ptySession) do(t *testing.T, line string) string {
	t.Helper()
	s.n++
	n := 1000 + s.n
	before := s.out.Len()
	// The typed line is echoed as $((n+0)); only the shell's output
	// reads MARK-n-END.
	fmt.Fprintf(s.ptmx, "%s; echo MARK-$((%d+0))-END\r", line, n)
	want := fmt.Sprintf("MARK-%d-END", n)
	if !s.out.WaitFor(want, short) {
		t.Fatalf("no %q after typing %q", want, line)
	}
	all := s.out.String()
	i := strings.Index(all[before:], want)
	return all[before : before+i]
}

// resize sets the terminal to rows x cols, signals ssh as the kernel does,
// and asks the remote side (up to 20 times) until stty shows the new size;
// it reports whether it did.
func (s *ptySession) resize(t *testing.T, rows, cols uint16) bool {
	t.Helper()
	if err := pty.Setsize(s.ptmx, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	s.cmd.Process.Signal(syscall.SIGWINCH)
	want := fmt.Sprintf("%d %d", rows, cols)
	for i := 0; i < 20; i++ {
		if strings.Contains(s.do(t, "stty size"), want) {
			return true
		}
	}
	return false
}

func TestPTY(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{})

	cmd := w.alice.SSHTo("web-1", []string{"-tt"})
	cmd.Env = append(cmd.Env, "TERM=xterm-256color")
	s := startPTY(t, cmd, 24, 80)

	out := s.do(t, "stty size; tty; echo TERM=$TERM")
	if !strings.Contains(out, "24 80") {
		t.Errorf("stty size: want 24 80 in %q", out)
	}
	if !strings.Contains(out, "/dev/pts/") {
		t.Errorf("tty: want /dev/pts/N in %q", out)
	}
	if !strings.Contains(out, "TERM=xterm-256color") {
		t.Errorf("TERM not passed: %q", out)
	}

	// Window change: resize the terminal (the kernel signals ssh, and we do
	// too), then ask again until the new size shows.
	if !s.resize(t, 40, 100) {
		t.Errorf("window change did not reach the remote pty")
	}

	fmt.Fprintf(s.ptmx, "exit 5\r")
	select {
	case err := <-s.done:
		if code := cmd.ProcessState.ExitCode(); code != 5 {
			t.Errorf("shell exit 5: ssh exited %d (%v)", code, err)
		}
	case <-time.After(short):
		t.Fatalf("ssh did not exit after `exit 5`")
	}
}

func TestPTYCommand(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{})
	cmd := w.alice.SSHTo("web-1", []string{"-tt"}, "stty size; tty; exit 7")
	s := startPTY(t, cmd, 30, 90)
	select {
	case <-s.done:
	case <-time.After(short):
		t.Fatal("ssh -tt CMD did not exit")
	}
	if code := cmd.ProcessState.ExitCode(); code != 7 {
		t.Errorf("exit: got %d, want 7", code)
	}
	out := s.out.String()
	if !strings.Contains(out, "30 90") || !strings.Contains(out, "/dev/pts/") {
		t.Errorf("ssh -tt 'stty size; tty': %q", out)
	}
}

// Killing the client ends the upstream command. With a PTY the upstream
// shell gets SIGHUP; without one OpenSSH's sshd itself leaves a command that
// neither reads nor writes running, so this test uses -tt.
func TestClientKilledEndsUpstreamCommand(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{})
	marker := fmt.Sprintf("sleep %d.%d", 4000+os.Getpid()%1000, time.Now().UnixNano()%1000)
	cmd := w.alice.SSHTo("web-1", []string{"-tt"}, marker)
	startPTY(t, cmd, 24, 80)
	if !harness.Eventually(short, func() bool { return len(w.sshd.Processes(marker)) > 0 }) {
		t.Fatalf("upstream never ran %q", marker)
	}
	pids := w.sshd.Processes(marker)
	cmd.Process.Kill()
	if !harness.Eventually(30*time.Second, func() bool { return len(w.sshd.Processes(marker)) == 0 }) {
		t.Errorf("upstream %q (pids %v) still running 30s after the client was killed", marker, pids)
		for _, pid := range w.sshd.Processes(marker) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func TestExecLargeOutputAndEarlyData(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{})
	dir := t.TempDir()
	// Many quick connections in a row: each must see its own first bytes.
	for i := 0; i < 10; i++ {
		in := fmt.Sprintf("line-%d\n", i)
		r := harness.MustRun(t, w.alice.SSHTo("web-1", nil, "head -c 7"), []byte(in), short)
		if r.Stdout != in[:7] {
			t.Fatalf("connection %d: got %q", i, r.Stdout)
		}
	}
	// 32 MiB from upstream to stdout.
	p := filepath.Join(dir, "out")
	f, _ := os.Create(p)
	cmd := w.alice.SSHTo("web-1", nil, "head -c 33554432 /dev/zero")
	cmd.Stdout = f
	harness.MustRun(t, cmd, nil, short)
	f.Close()
	if st, _ := os.Stat(p); st == nil || st.Size() != 32<<20 {
		t.Errorf("got %v bytes, want %d", st.Size(), 32<<20)
	}
}

// The upstream sshd announces its host keys (hostkeys-00@openssh.com) after
// login; the gate must drop them, or a client with UpdateHostKeys=yes would
// record the upstream's keys as the gate's.
func TestUpstreamHostKeysNotLearned(t *testing.T) {
	t.Parallel()
	gateOnly(t)
	w := newWorld(t, worldOptions{})
	// A second upstream host key, which a client would learn if the
	// announcement got through.
	ecdsa := filepath.Join(t.TempDir(), "ssh_host_ecdsa_key")
	harness.MustRun(t, exec.Command("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", ecdsa), nil, short)
	w.sshd = w.sshd.RestartWith(t, harness.SSHDOptions{Extra: []string{"HostKey " + ecdsa}})
	before, err := os.ReadFile(w.alice.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, before, 0o600)
	c := w.alice.WithOpts("UpdateHostKeys=yes")
	c.KnownHosts = kh
	for _, target := range []string{"web-1", ""} {
		var cmd *exec.Cmd
		if target == "" {
			cmd = c.SSHTo("", nil, "ls")
		} else {
			cmd = c.SSHTo(target, nil, "true")
		}
		harness.MustRun(t, cmd, nil, short)
	}
	after, _ := os.ReadFile(kh)
	for _, pub := range []string{w.sshd.HostKeyPub, ecdsa + ".pub"} {
		upstream, _ := os.ReadFile(pub)
		if f := strings.Fields(string(upstream)); len(f) > 1 && strings.Contains(string(after), f[1]) {
			t.Errorf("the client learned the upstream's %s host key as the gate's:\n%s", f[0], after)
		}
	}
	if string(after) != string(before) {
		t.Logf("known_hosts changed (the gate's own keys only?):\n%s", after)
	}
}
