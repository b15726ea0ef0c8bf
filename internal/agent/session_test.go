package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"
)

func TestExecExitStatus(t *testing.T) {
	f := newFixture(t, "", nil)
	for _, code := range []int{0, 1, 7, 255} {
		r := f.ssh(t, nil, nil, "exit "+strconv.Itoa(code))
		if r.code != code {
			t.Errorf("exit %d: ssh returned %d (stderr %q)", code, r.code, r.stderr)
		}
	}
}

func TestExecStdoutStderrSeparate(t *testing.T) {
	f := newFixture(t, "", nil)
	r := f.ssh(t, nil, nil, "echo out; echo err >&2; echo out2")
	if r.stdout != "out\nout2\n" || r.stderr != "err\n" || r.code != 0 {
		t.Fatalf("got stdout %q stderr %q code %d", r.stdout, r.stderr, r.code)
	}
}

func TestStdinEOFReachesCommand(t *testing.T) {
	f := newFixture(t, "", nil)
	in := bytes.Repeat([]byte("0123456789abcdef"), 64*1024+3) // 1 MiB + 48
	r := f.ssh(t, bytes.NewReader(in), nil, "wc -c")
	if strings.TrimSpace(r.stdout) != strconv.Itoa(len(in)) {
		t.Fatalf("wc -c printed %q, want %d", r.stdout, len(in))
	}
	r = f.ssh(t, strings.NewReader("hello\nworld\n"), nil, "cat; echo done")
	if r.stdout != "hello\nworld\ndone\n" {
		t.Fatalf("cat printed %q", r.stdout)
	}
}

// OpenSSH 9.2 prints nothing for exit-signal and exits 255 ("Exit status
// -1" at -v); the x/crypto client sees the signal name.
func TestExitSignal(t *testing.T) {
	f := newFixture(t, "", nil)
	r := f.ssh(t, nil, []string{"-v"}, "echo before; kill -TERM $$")
	if r.code != 255 || r.stdout != "before\n" {
		t.Fatalf("got code %d stdout %q", r.code, r.stdout)
	}
	mustContain(t, r.stderr, "rtype exit-signal")

	c, err := f.client(t, "x", f.user.signer)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run("kill -TERM $$")
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "TERM" {
		t.Fatalf("Run: %v, want exit-signal TERM", err)
	}
	s, _ = c.NewSession()
	err = s.Run("kill -USR1 $$")
	if !errors.As(err, &ee) || ee.Signal() != "USR1" {
		t.Fatalf("Run: %v, want exit-signal USR1", err)
	}
}

// A "signal" request reaches the command's process group.
func TestSignalRequest(t *testing.T) {
	f := newFixture(t, "", nil)
	c, err := f.client(t, "x", f.user.signer)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	s.Stdout = out
	stdin, err := s.StdinPipe() // kept open: read blocks
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	// No child processes: a signal landing between fork and exec of a
	// child is a shell race we do not want to test.
	if err := s.Start("trap 'echo got-int; exit 3' INT; echo ready; while :; do read x; done"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "ready", func() bool { return strings.Contains(out.String(), "ready\n") })
	// Resent until it shows: the request and the shell's state race.
	eventually(t, 10*time.Second, "the trap to run", func() bool {
		if strings.Contains(out.String(), "got-int") {
			return true
		}
		if err := s.Signal(ssh.SIGINT); err != nil {
			t.Fatal(err)
		}
		return false
	})
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end after the trap")
	}
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 || out.String() != "ready\ngot-int\n" {
		t.Fatalf("Wait: %v, output %q", err, out.String())
	}
}

// ssh -tt under a real terminal of a known size: the agent allocates a PTY
// (controlling terminal, size from pty-req).
func TestPTY(t *testing.T) {
	f := newFixture(t, "", nil)
	args := append(f.opensshOpts(f.user.path), "-p", f.port, "-tt", "x@127.0.0.1", "tty; stty size; echo term=$TERM")
	cmd := exec.Command("ssh", args...)
	cmd.Env = append(os.Environ(), "TERM=xterm-test")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 33, Cols: 101})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptmx.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&out, ptmx); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("ssh -tt did not finish")
	}
	got := strings.ReplaceAll(out.String(), "\r", "")
	mustContain(t, got, "/dev/pts/")
	mustContain(t, got, "33 101\n")
	mustContain(t, got, "term=xterm-test\n")
}

func TestWindowChange(t *testing.T) {
	f := newFixture(t, "", nil)
	c, err := f.client(t, "x", f.user.signer)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("vt100", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	out := &syncBuffer{}
	s.Stdout = out
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	if err := s.WindowChange(50, 132); err != nil {
		t.Fatal(err)
	}
	// The request and the data travel separately: poll until the new size shows.
	eventually(t, 20*time.Second, "stty size 50 132", func() bool {
		if strings.Contains(out.String(), "50 132") {
			return true
		}
		_, _ = io.WriteString(in, "stty size\n")
		return false
	})
	_, _ = io.WriteString(in, "exit 4\n")
	var ee *ssh.ExitError
	if err := s.Wait(); !errors.As(err, &ee) || ee.ExitStatus() != 4 {
		t.Fatalf("Wait: %v", err)
	}
}

func TestEnv(t *testing.T) {
	f := newFixture(t, "", func(o *Options) { o.Env = []string{"FIXED=fixed-value", "LC_FORCED=fixed"} })
	r := f.ssh(t, nil, []string{"-o", "SetEnv=LANG=C.UTF-8 LC_FORCED=client FOO=bar"},
		`echo "$LANG|$FIXED|$LC_FORCED|${FOO-unset}|$HOME|$USER"`)
	want := "C.UTF-8|fixed-value|fixed|unset|" + f.srv.user.home + "|" + f.srv.user.name + "\n"
	if r.stdout != want {
		t.Fatalf("got %q, want %q", r.stdout, want)
	}
}

func TestRefusedRequests(t *testing.T) {
	f := newFixture(t, "", nil)
	c, err := f.client(t, "x", f.user.signer)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []string{"keepalive@openssh.com", "no-more-sessions@openssh.com", "whatever@example.com"} {
		ok, _, err := c.SendRequest(req, true, nil)
		if err != nil || ok {
			t.Errorf("global %s: ok=%v err=%v, want refused", req, ok, err)
		}
	}
	ch, _, err := c.OpenChannel("direct-streamlocal@openssh.com", ssh.Marshal(&struct {
		Path string
		A    string
		B    uint32
	}{"/var/run/docker.sock", "", 0}))
	if err == nil {
		ch.Close()
		t.Error("direct-streamlocal opened")
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	// auth-agent-req@openssh.com is served: see agentfwd_test.go.
	for _, req := range []string{"x11-req", "break"} {
		payload := []byte(nil)
		if req == "x11-req" {
			payload = ssh.Marshal(&struct {
				Single bool
				Proto  string
				Cookie string
				Screen uint32
			}{false, "MIT-MAGIC-COOKIE-1", "00", 0})
		}
		ok, err := s.SendRequest(req, true, payload)
		if err != nil || ok {
			t.Errorf("session %s: ok=%v err=%v, want refused", req, ok, err)
		}
	}
	if err := s.Setenv("FOO", "bar"); err == nil {
		t.Error("env FOO accepted")
	}
	if err := s.Setenv("LC_ALL", "C"); err != nil {
		t.Errorf("env LC_ALL refused: %v", err)
	}
	ok, err := s.SendRequest("subsystem", true, ssh.Marshal(&struct{ Name string }{"nope"}))
	if err != nil || ok {
		t.Errorf("unknown subsystem: ok=%v err=%v", ok, err)
	}
}

func TestBusyboxShell(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox")
	}
	f := newFixture(t, "", func(o *Options) { o.Shell = "/bin/busybox" })
	r := f.ssh(t, nil, nil, "echo $0; busybox true && exit 3")
	if r.code != 3 || r.stdout != "sh\n" {
		t.Fatalf("got code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	// A login shell ("-sh" for busybox) reading commands from stdin.
	r = f.ssh(t, strings.NewReader("echo shell-$((6*7))\n"), []string{"-T"}, "")
	if r.code != 0 || !strings.Contains(r.stdout, "shell-42\n") {
		t.Fatalf("shell: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

// Sessions, forwarding and connections leave no goroutines or descriptors
// behind.
func TestNoLeaks(t *testing.T) {
	f := newFixture(t, "", nil)
	echo := echoServer(t)
	// warm up lazily started runtime goroutines
	f.ssh(t, nil, nil, "true")
	baseG := runtime.NumGoroutine()
	baseFD := countFDs(t)
	src := filepath.Join(f.dir, "leak-src")
	if err := os.WriteFile(src, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		f.ssh(t, strings.NewReader("x"), nil, "cat; sleep 0.01 & echo bg")
		f.ssh(t, nil, []string{"-tt"}, "true")
		f.sftp(t, "get "+src+" "+src+".sftp\n")
		f.scp(t, src, "x@127.0.0.1:"+src+".scp")
		c, err := f.client(t, "x", f.user.signer)
		if err != nil {
			t.Fatal(err)
		}
		if conn, err := c.Dial("tcp", echo); err == nil {
			_, _ = roundTrip(conn, "x")
		}
		if l, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
			_ = l // closed with the connection
		}
		c.Close()
	}
	c, err := f.client(t, "x", f.user.signer)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	_ = s.Start("sleep 60")
	c.Close() // the agent must kill the sleep and let go of everything
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > baseG+2 || countFDs(t) > baseFD {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines %d (baseline %d), fds %d (baseline %d)\n%s",
				runtime.NumGoroutine(), baseG, countFDs(t), baseFD, buf[:n])
		}
		<-time.After(10 * time.Millisecond)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Quick commands in parallel: the exec reply must go out before the
// command's output, exit status and close (a close first reads as EOF to
// the client).
func TestManyQuickSessions(t *testing.T) {
	f := newFixture(t, "", nil)
	c, err := f.client(t, "x", f.user.signer)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			s, err := c.NewSession()
			if err != nil {
				errs <- err
				return
			}
			out, err := s.Output("echo hi; exit 3")
			var ee *ssh.ExitError
			if !errors.As(err, &ee) || ee.ExitStatus() != 3 || string(out) != "hi\n" {
				errs <- fmt.Errorf("output %q, err %v", out, err)
				return
			}
			errs <- nil
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
