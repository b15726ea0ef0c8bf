package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testKey is a client key pair written to disk for OpenSSH.
type testKey struct {
	path   string // private key file (OpenSSH format, 0600)
	signer ssh.Signer
	pub    ssh.PublicKey
}

func newTestKey(t testing.TB, dir, name string) *testKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	return &testKey{path: p, signer: signer, pub: signer.PublicKey()}
}

// fixture is an agent serving on 127.0.0.1:0 in this process.
type fixture struct {
	dir     string
	addr    string
	port    string
	user    *testKey
	hostPub ssh.PublicKey
	kh      string // known_hosts for OpenSSH
	srv     *Server
}

// newFixture starts an agent that accepts the fixture's user key plus any
// extra authorized_keys lines; mod may change the options.
func newFixture(t testing.TB, extraAuth string, mod func(*Options)) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, user: newTestKey(t, dir, "user")}
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	f.hostPub = hostSigner.PublicKey()
	ak := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(ak, append(ssh.MarshalAuthorizedKey(f.user.pub), extraAuth...), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := Options{HostKey: hostSigner, AuthorizedKeysFile: ak, Shell: "/bin/sh"}
	if mod != nil {
		mod(&opts)
	}
	f.srv, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	_, f.port, _ = net.SplitHostPort(f.addr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.ServeListener(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeListener: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("ServeListener did not return")
		}
	})
	f.kh = filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%s %s", f.port, ssh.MarshalAuthorizedKey(f.hostPub))
	if err := os.WriteFile(f.kh, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// opensshOpts are the options every OpenSSH client run gets.
func (f *fixture) opensshOpts(key string) []string {
	return []string{"-F", "none", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=" + f.kh,
		"-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-i", key}
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs an OpenSSH tool with a deadline and returns its output and exit code.
func run(t *testing.T, stdin io.Reader, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", name, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out; stderr: %s", name, args, r.stderr)
	}
	return r
}

// ssh runs "ssh ... x@127.0.0.1 command".
func (f *fixture) ssh(t *testing.T, stdin io.Reader, extra []string, command string) result {
	t.Helper()
	args := append(f.opensshOpts(f.user.path), "-p", f.port)
	args = append(args, extra...)
	args = append(args, "x@127.0.0.1")
	if command != "" {
		args = append(args, command)
	}
	return run(t, stdin, "ssh", args...)
}

// client is an x/crypto client to the fixture, closed at cleanup.
func (f *fixture) client(t *testing.T, user string, signer ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(f.hostPub),
		Timeout:         10 * time.Second,
	}
	c, err := ssh.Dial("tcp", f.addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// eventually polls cond until it holds or the deadline passes.
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

func mustContain(t *testing.T, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Fatalf("output %q does not contain %q", got, want)
	}
}
