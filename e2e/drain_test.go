package e2e_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshgate/sshgate/e2e/harness"
)

// SIGTERM with 200 live sessions (20 connections of 10 exec sessions from
// one x/crypto client, plus a PTY session from OpenSSH): the PTY user is
// told the deadline, every session is ended at limits.shutdown_grace with
// one line on stderr and exit status 255, and the gate exits 0 soon after.
func TestDrainLiveSessions(t *testing.T) {
	gateOnly(t)
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	cfg := filepath.Join(t.TempDir(), "sshgate.yaml")
	if err := os.WriteFile(cfg, []byte("limits:\n  shutdown_grace: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := harness.StartGate(t, harness.GateOptions{Args: []string{"--config", cfg}})
	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	sshd.Authorize(t, g.GateKey(t))
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := g.AddUser(t, "alice")
	g.Admin(t, "grant", "alice", "--target", "web-1", "--login", "root")

	keyPEM, err := os.ReadFile(alice.Key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	hk, err := knownhosts.New(g.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	cc := &ssh.ClientConfig{User: "alice+web-1", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hk, HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}, Timeout: 20 * time.Second}
	var clients []*ssh.Client
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	sessions := 0
	type live struct {
		s      *ssh.Session
		stderr *harness.Buffer
	}
	var all []live
	for i := 0; i < 20; i++ {
		c, err := ssh.Dial("tcp", g.Addr, cc)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		clients = append(clients, c)
		for j := 0; j < 10; j++ {
			s, err := c.NewSession()
			if err != nil {
				t.Fatalf("session %d.%d: %v", i, j, err)
			}
			l := live{s, &harness.Buffer{}}
			s.Stderr = l.stderr
			if err := s.Start("sleep 300"); err != nil {
				t.Fatalf("start %d.%d: %v", i, j, err)
			}
			all = append(all, l)
			sessions++
		}
	}
	pty := alice.SSHTo("web-1", []string{"-tt"}, "echo up; sleep 300")
	out := &harness.Buffer{}
	pty.Stdout, pty.Stderr = out, out
	if err := pty.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pty.Process.Kill(); pty.Wait() })
	if !out.WaitFor("up", short) {
		t.Fatalf("PTY session did not start: %q", out.String())
	}
	if !harness.Eventually(short, func() bool { return strings.Count(g.Stderr.String(), "session started") >= sessions+1 }) {
		t.Fatalf("only %d sessions started", strings.Count(g.Stderr.String(), "session started"))
	}

	start := time.Now()
	syscall.Kill(g.PID(), syscall.SIGTERM)
	if !out.WaitFor("sshgate: this gate is restarting; your session will end in 3s", 10*time.Second) {
		t.Errorf("PTY user was not told: %q", out.String())
	}
	if !harness.Eventually(30*time.Second, g.Exited) {
		t.Fatal("gate did not exit after the drain deadline")
	}
	took := time.Since(start)
	// Every session was ended with the line and an exit status.
	want := "sshgate: this gate is restarting; session ended\n"
	bad := 0
	for i, l := range all {
		err := l.s.Wait()
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 255 || l.stderr.String() != want {
			if bad++; bad <= 3 {
				t.Errorf("session %d: %v, stderr %q; want exit status 255 and %q", i, err, l.stderr.String(), want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d exec sessions did not end with the line and status 255", bad, len(all))
	}
	if err := pty.Wait(); pty.ProcessState.ExitCode() != 255 || !strings.Contains(out.String(), strings.TrimSuffix(want, "\n")) {
		t.Errorf("PTY session: %v, output %q; want exit 255 and the line", err, out.String())
	}
	t.Logf("drain of %d sessions: %s", sessions+1, took.Round(time.Millisecond))
	for _, l := range strings.Split(g.Stderr.String(), "\n") {
		if strings.Contains(l, "drain deadline reached") || strings.Contains(l, "msg=stopped") || strings.Contains(l, "msg=draining") {
			t.Logf("gate: %s", l)
		}
	}
	if took > 15*time.Second {
		t.Errorf("drain took %s with a 3s deadline", took)
	}
	if err := g.Stop(); err != nil {
		t.Errorf("gate exit: %v, want 0", err)
	}
	if !strings.Contains(g.Stderr.String(), "pty_sessions_told=1") {
		t.Errorf("the gate did not log the PTY session told")
	}
}
