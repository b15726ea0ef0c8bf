package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var agentBin string

// TestMain builds the static binary once and runs the tests against it.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sshgate-agent-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "sshgate-agent")
	build := exec.Command("go", "build", "-o", agentBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type keys struct {
	dir      string
	hostKey  string // host private key file
	hostPub  ssh.PublicKey
	userKey  string // client private key file
	user     ssh.Signer
	authKeys string
}

func writeKey(t *testing.T, path string) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newKeys(t *testing.T) *keys {
	t.Helper()
	k := &keys{dir: t.TempDir()}
	k.hostKey = filepath.Join(k.dir, "host")
	k.hostPub = writeKey(t, k.hostKey).PublicKey()
	k.userKey = filepath.Join(k.dir, "user")
	k.user = writeKey(t, k.userKey)
	k.authKeys = filepath.Join(k.dir, "authorized_keys")
	if err := os.WriteFile(k.authKeys, ssh.MarshalAuthorizedKey(k.user.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *keys) agentArgs(mode ...string) []string {
	return append(mode, "--host-key", k.hostKey, "--authorized-keys", k.authKeys, "--shell", "/bin/sh")
}

func (k *keys) knownHosts(t *testing.T, host string) string {
	t.Helper()
	p := filepath.Join(k.dir, "known_hosts")
	if err := os.WriteFile(p, []byte(host+" "+string(ssh.MarshalAuthorizedKey(k.hostPub))), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (k *keys) clientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(k.user)},
		HostKeyCallback: ssh.FixedHostKey(k.hostPub), Timeout: 10 * time.Second}
}

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

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// agentProc is a running binary.
type agentProc struct {
	exited chan struct{} // closed once it exited; err is then set
	err    error
}

// startAgent runs the binary; it is killed at cleanup if still running.
func startAgent(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer, *agentProc) {
	t.Helper()
	return startCmd(t, exec.Command(agentBin, args...))
}

// startCmd starts cmd (its stdin and stdout already set up) with its
// stderr captured; it is killed at cleanup if still running.
func startCmd(t *testing.T, cmd *exec.Cmd) (*exec.Cmd, *syncBuffer, *agentProc) {
	t.Helper()
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	return cmd, stderr, p
}

func waitExit(t *testing.T, p *agentProc, d time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(d):
		t.Fatal("agent did not exit")
		return nil
	}
}

func TestBadFlags(t *testing.T) {
	k := newKeys(t)
	notKey := filepath.Join(k.dir, "not-a-key")
	if err := os.WriteFile(notKey, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badAK := filepath.Join(k.dir, "bad_ak")
	if err := os.WriteFile(badAK, []byte("from=\"x\" "+string(ssh.MarshalAuthorizedKey(k.user.PublicKey()))), 0o600); err != nil {
		t.Fatal(err)
	}
	hk, ak := "--host-key="+k.hostKey, "--authorized-keys="+k.authKeys
	tests := []struct {
		args []string
		want string
	}{
		{[]string{hk, ak}, "exactly one of --stdio"},
		{[]string{"--stdio", "--listen", "127.0.0.1:0", hk, ak}, "exactly one of --stdio"},
		{[]string{"--dial", "bogus", hk, ak}, `--dial "bogus"`},
		{[]string{"--dial", "unix:", hk, ak}, `--dial "unix:"`},
		{[]string{"--listen", "nocolon", hk, ak}, `--listen "nocolon"`},
		{[]string{"--stdio", ak}, "--host-key FILE is required"},
		{[]string{"--stdio", hk}, "--authorized-keys FILE is required"},
		{[]string{"--stdio", "--host-key", "/nonexistent/key", ak}, `--host-key "/nonexistent/key"`},
		{[]string{"--stdio", "--host-key", notKey, ak}, `--host-key "` + notKey + `"`},
		{[]string{"--stdio", hk, "--authorized-keys", badAK}, `option "from" is not supported`},
		{[]string{"--stdio", hk, ak, "--env", "NOEQUALS"}, `"NOEQUALS"`},
		{[]string{"--stdio", hk, ak, "--shell", "/nonexistent/sh"}, `--shell "/nonexistent/sh"`},
		{[]string{"--stdio", hk, ak, "--bogus"}, "-bogus"},
		{[]string{"--stdio", hk, ak, "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		cmd := exec.Command(agentBin, tt.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit status 2", tt.args, err)
		}
		msg := stderr.String()
		if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "sshgate-agent: ") || !strings.Contains(msg, tt.want) {
			t.Errorf("%v: stderr %q, want one line containing %q", tt.args, msg, tt.want)
		}
	}
}

// --stdio as an OpenSSH ProxyCommand: a real client over the agent's
// stdin and stdout.
func TestStdioProxyCommand(t *testing.T) {
	k := newKeys(t)
	kh := k.knownHosts(t, "agent")
	proxy := strings.Join(append([]string{agentBin}, k.agentArgs("--stdio", "--env", "FROM_ENV=yes")...), " ")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile="+kh,
		"-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-i", k.userKey,
		"-o", "ProxyCommand="+proxy, "x@agent", "echo $FROM_ENV; echo err >&2; exit 5")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 5 || stdout.String() != "yes\n" || !strings.Contains(stderr.String(), "err\n") {
		t.Fatalf("ssh via --stdio: %v stdout %q stderr %q", err, stdout.String(), stderr.String())
	}
}

// --dial unix:PATH, started before the gate's socket exists: it retries,
// serves the one connection, and exits 0 when it ends.
func TestDialUnix(t *testing.T) {
	k := newKeys(t)
	sock := filepath.Join(k.dir, "gate.sock")
	_, stderr, done := startAgent(t, k.agentArgs("--dial", "unix:"+sock)...)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	var conn net.Conn
	select {
	case conn = <-accepted:
	case <-time.After(15 * time.Second):
		t.Fatalf("agent did not dial; stderr %q", stderr.String())
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, "container", k.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	s, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("echo via-unix")
	if err != nil || string(out) != "via-unix\n" {
		t.Fatalf("exec: %q %v; agent stderr %q", out, err, stderr.String())
	}
	client.Close()
	if err := waitExit(t, done, 10*time.Second); err != nil {
		t.Fatalf("agent exit: %v; stderr %q", err, stderr.String())
	}
}

// --dial gives up after 10 s with status 1 when nobody listens.
func TestDialGivesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 10 s")
	}
	k := newKeys(t)
	_, stderr, done := startAgent(t, k.agentArgs("--dial", "unix:"+filepath.Join(k.dir, "never.sock"))...)
	start := time.Now()
	err := waitExit(t, done, 20*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || time.Since(start) < 9*time.Second {
		t.Fatalf("exit %v after %v; stderr %q", err, time.Since(start), stderr.String())
	}
	if !strings.Contains(stderr.String(), "dial unix:") {
		t.Fatalf("stderr %q", stderr.String())
	}
}

var listenRe = regexp.MustCompile(`msg=listening addr=(\S+)`)

func listenAddr(t *testing.T, stderr *syncBuffer) string {
	t.Helper()
	var addr string
	eventually(t, 10*time.Second, "the listening line", func() bool {
		if m := listenRe.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	return addr
}

// --listen serves until SIGTERM, which also ends running sessions.
func TestListenSIGTERM(t *testing.T) {
	k := newKeys(t)
	cmd, stderr, done := startAgent(t, k.agentArgs("--listen", "127.0.0.1:0")...)
	addr := listenAddr(t, stderr)
	_, port, _ := net.SplitHostPort(addr)
	kh := k.knownHosts(t, "[127.0.0.1]:"+port)
	out, err := exec.Command("ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile="+kh,
		"-o", "StrictHostKeyChecking=yes", "-i", k.userKey, "-p", port, "x@127.0.0.1", "echo listen-ok").Output()
	if err != nil || string(out) != "listen-ok\n" {
		t.Fatalf("ssh: %q %v", out, err)
	}
	c, err := ssh.Dial("tcp", addr, k.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := c.NewSession()
	if err := s.Start("sleep 60"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, done, 10*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if err := s.Wait(); err == nil {
		t.Fatal("session survived the agent")
	}
}

// --reap: an orphan left behind by a session is adopted (subreaper, as
// init would) and reaped when it exits, not left a zombie.
func TestReapOrphans(t *testing.T) {
	k := newKeys(t)
	cmd, stderr, proc := startAgent(t, k.agentArgs("--listen", "127.0.0.1:0", "--reap")...)
	addr := listenAddr(t, stderr)
	c, err := ssh.Dial("tcp", addr, k.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := c.NewSession()
	// The orphan ignores the hang-up sent to the session's group (ignored
	// before the fork, so there is no window) and lives for a moment after
	// its parent shell is gone.
	out, err := s.Output(`trap "" HUP; sleep 1 >/dev/null 2>&1 </dev/null & echo $!`)
	if err != nil {
		t.Fatalf("exec: %v; agent stderr %q", err, stderr.String())
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("pid %q", out)
	}
	adopted := false
	eventually(t, 15*time.Second, "the orphan to be reaped", func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true // gone: reaped
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(cmd.Process.Pid) {
			adopted = true
		}
		return false
	})
	if !adopted {
		t.Fatal("the orphan was never the agent's child")
	}
	// Sessions still get their exit status when the agent reaps.
	s, _ = c.NewSession()
	var ee *ssh.ExitError
	if err := s.Run("exit 9"); !errors.As(err, &ee) || ee.ExitStatus() != 9 {
		select {
		case <-proc.exited:
		case <-time.After(2 * time.Second):
		}
		t.Fatalf("exit status with --reap: %v; agent stderr %q, agent exit %v", err, stderr.String(), proc.err)
	}
}
