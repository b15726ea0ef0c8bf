package harness

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// GateOptions tune StartGate; the zero value is a fresh gate.
type GateOptions struct {
	DataDir string   // reuse this data directory instead of a fresh one
	Port    int      // listen on this port instead of a free one
	Args    []string // extra arguments to `sshgate serve`
	Env     []string // extra environment
	Host    string   // listen on this address instead of 127.0.0.1 (::1 for IPv6)
}

// Gate is a running `sshgate serve`.
type Gate struct {
	Bin        string
	DataDir    string
	Host       string // 127.0.0.1, or GateOptions.Host
	Port       int
	Addr       string // 127.0.0.1:PORT ([::1]:PORT)
	KnownHosts string // known_hosts file holding the gate's ed25519 host key
	HostKey    string // the gate's host public key line (ssh-ed25519 AAAA...)
	Stderr     *Buffer

	env  []string
	proc *Process
}

// StartGate runs `sshgate serve` on a free 127.0.0.1 (or opts.Host) port with a fresh data
// directory, waits until it accepts connections and writes a known_hosts
// file for it. It is stopped in t.Cleanup, and its stderr is logged when the
// test failed (or when it shows a data race or a panic, which fails the test).
func StartGate(t testing.TB, opts GateOptions) *Gate {
	t.Helper()
	RequireTools(t, "ssh", "ssh-keygen")
	bin := GateBinary(t)
	g := &Gate{Bin: bin, DataDir: opts.DataDir, Host: "127.0.0.1", Stderr: &Buffer{}}
	if opts.Host != "" {
		g.Host = opts.Host
	}
	if g.DataDir == "" {
		g.DataDir = filepath.Join(t.TempDir(), "data")
	}
	g.env = append(append(os.Environ(), "SSHGATE_DATA="+g.DataDir, "GORACE=halt_on_error=0"), opts.Env...)

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between look-up and listen
		g.Port = opts.Port
		if g.Port == 0 {
			g.Port = FreePort(t)
		}
		g.Addr = net.JoinHostPort(g.Host, strconv.Itoa(g.Port))
		if lastErr = g.start(opts.Args); lastErr == nil {
			break
		}
		if opts.Port != 0 {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("start gate: %v\ngate stderr:\n%s", lastErr, g.Stderr.String())
	}
	t.Cleanup(func() { g.cleanup(t) })

	g.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
	hk, err := WriteKnownHosts(g.KnownHosts, g.Host, g.Port, filepath.Join(g.DataDir, "host_keys", "ssh_host_ed25519_key.pub"))
	if err != nil {
		t.Fatalf("gate known_hosts: %v", err)
	}
	g.HostKey = hk
	return g
}

func (g *Gate) start(extra []string) error {
	args := append([]string{g.Bin, "serve", "--data", g.DataDir, "--listen", g.Addr}, extra...)
	p, err := StartProcess("gate", g.Stderr, g.env, args...)
	if err != nil {
		return err
	}
	if err := WaitListening(g.Addr, 60*time.Second, p.Alive); err != nil {
		p.Stop(0)
		return fmt.Errorf("%v (exit: %v)", err, p.Err())
	}
	g.proc = p
	return nil
}

// PID is the gate process's id.
func (g *Gate) PID() int { return g.proc.PID() }

// Exited reports whether the gate process has exited.
func (g *Gate) Exited() bool { return !g.proc.Alive() }

// Stop ends the gate with SIGTERM (SIGKILL after 10 s) and returns how it
// exited. Calling it again returns the same.
func (g *Gate) Stop() error {
	if g.proc == nil {
		return nil
	}
	if !g.proc.Stop(10 * time.Second) {
		return errors.New("did not exit within 10s of SIGTERM; killed")
	}
	return g.proc.Err()
}

func (g *Gate) cleanup(t testing.TB) {
	if t.Failed() && !g.Exited() {
		// A goroutine dump shows where a hung session waits.
		g.proc.Cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-g.proc.Done():
			stderr := g.Stderr.String()
			if p := saveLog(t, "gate", stderr); p != "" {
				t.Logf("gate goroutine dump (SIGQUIT on failure) and log: %s", p)
			}
			logPart, _, _ := strings.Cut(stderr, "\nSIGQUIT: quit")
			t.Logf("gate stderr (%s) before the dump, tail:\n%s", g.Addr, tail(logPart, 6000))
			return
		case <-time.After(5 * time.Second):
		}
	}
	err := g.Stop()
	stderr := g.Stderr.String()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == -1:
		// Killed by the SIGTERM itself: no graceful shutdown, but it exited.
		t.Logf("gate exit on SIGTERM: %v", err)
	default:
		t.Errorf("gate exit after SIGTERM: %v", err)
	}
	if strings.Contains(stderr, "WARNING: DATA RACE") {
		t.Errorf("the gate reported a data race")
	}
	if strings.Contains(stderr, "panic:") || strings.Contains(stderr, "fatal error:") {
		t.Errorf("the gate panicked")
	}
	if t.Failed() {
		t.Logf("gate stderr (%s):\n%s", g.Addr, clip(stderr))
	}
}

// AdminResult runs `sshgate ARGS... --data DIR` and returns its output and
// exit status.
func (g *Gate) AdminResult(args ...string) (stdout, stderr string, code int) {
	r := g.admin(nil, args)
	if r.Err != nil {
		return r.Stdout, r.Stderr + "\n" + r.Err.Error(), -1
	}
	return r.Stdout, r.Stderr, r.Code
}

// AdminInput is AdminResult with stdin.
func (g *Gate) AdminInput(stdin string, args ...string) (stdout, stderr string, code int) {
	r := g.admin([]byte(stdin), args)
	if r.Err != nil {
		return r.Stdout, r.Stderr + "\n" + r.Err.Error(), -1
	}
	return r.Stdout, r.Stderr, r.Code
}

func (g *Gate) admin(stdin []byte, args []string) Result {
	cmd := exec.Command(g.Bin, append(append([]string{}, args...), "--data", g.DataDir)...)
	cmd.Env = g.env
	if stdin == nil {
		stdin = []byte{}
	}
	return Run(cmd, stdin, 60*time.Second)
}

// Admin runs an admin command against the gate's data directory and fails
// the test unless it exits 0. It returns stdout.
func (g *Gate) Admin(t testing.TB, args ...string) string {
	t.Helper()
	so, se, code := g.AdminResult(args...)
	if code != 0 {
		t.Fatalf("sshgate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, so, se)
	}
	return so
}

// AdminStdin is Admin with stdin (for --password-stdin).
func (g *Gate) AdminStdin(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	so, se, code := g.AdminInput(stdin, args...)
	if code != 0 {
		t.Fatalf("sshgate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, so, se)
	}
	return so
}

// GateKey returns the authorized_keys line the gate logs in to targets with.
func (g *Gate) GateKey(t testing.TB) string {
	t.Helper()
	line := strings.TrimSpace(g.Admin(t, "gate-key"))
	if !strings.HasPrefix(line, "ssh-") && !strings.HasPrefix(line, "ecdsa-") {
		t.Fatalf("sshgate gate-key printed %q, want one authorized_keys line", line)
	}
	return line
}

// AddUser adds a gate user with a fresh key and returns a client for it.
func (g *Gate) AddUser(t testing.TB, name string) *Client {
	t.Helper()
	g.Admin(t, "user", "add", name)
	key, pub := Keygen(t, t.TempDir(), "id_"+name)
	pubFile := key + ".pub"
	_ = pub
	g.Admin(t, "key", "add", name, pubFile)
	return g.Client(name, key)
}

// Client returns a client of the gate as user with the given private key.
func (g *Gate) Client(user, key string) *Client {
	return &Client{Host: g.Host, Port: g.Port, User: user, Key: key, KnownHosts: g.KnownHosts}
}

// LogContains reports whether the gate's output so far contains s.
func (g *Gate) LogContains(s string) bool {
	return bytes.Contains([]byte(g.Stderr.String()), []byte(s))
}

// Environ is the environment the gate and its admin commands run with.
func (g *Gate) Environ() []string { return g.env }
