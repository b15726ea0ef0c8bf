package agent

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
)

// agentClient is an x/crypto client that forwards a keyring holding one
// fresh key; it returns the client and the key's fingerprint.
func agentClient(t *testing.T, f *fixture, signer ssh.Signer) (*ssh.Client, string) {
	t.Helper()
	c, err := f.client(t, "x", signer)
	if err != nil {
		t.Fatal(err)
	}
	key := newTestKey(t, t.TempDir(), "agent-key")
	ring := sshagent.NewKeyring()
	priv, err := ssh.ParseRawPrivateKey(mustRead(t, key.path))
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.Add(sshagent.AddedKey{PrivateKey: priv, Comment: "forwarded"}); err != nil {
		t.Fatal(err)
	}
	if err := sshagent.ForwardToAgent(c, ring); err != nil {
		t.Fatal(err)
	}
	return c, ssh.FingerprintSHA256(key.pub)
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// output runs cmd in a new session of c, forwarding the agent if asked, and
// returns its output.
func output(t *testing.T, c *ssh.Client, forward bool, cmd string) (string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if forward {
		if err := sshagent.RequestAgentForwarding(s); err != nil {
			return "", err
		}
	}
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

const agentProbe = `echo "sock=$SSH_AUTH_SOCK"; stat -c '%a %u' "$SSH_AUTH_SOCK" "$(dirname "$SSH_AUTH_SOCK")"; ssh-add -l`

// A session that asks for agent forwarding gets a private socket whose
// clients reach the user's agent over auth-agent@openssh.com channels; the
// socket is gone when the session ends; nothing is left running.
func TestAgentForwarding(t *testing.T) {
	if _, err := os.Stat("/usr/bin/ssh-add"); err != nil {
		t.Skip("no ssh-add")
	}
	f := newFixture(t, "", nil)
	c, fp := agentClient(t, f, f.user.signer)
	output(t, c, true, "true") // warm up
	baseG := runtime.NumGoroutine()
	var sock string
	for i := 0; i < 3; i++ {
		out, err := output(t, c, true, agentProbe)
		if err != nil {
			t.Fatalf("session: %v\n%s", err, out)
		}
		uid := os.Getuid()
		if !strings.Contains(out, fp) || !strings.Contains(out, "forwarded") {
			t.Fatalf("ssh-add -l does not list the forwarded key %s:\n%s", fp, out)
		}
		lines := strings.Split(out, "\n")
		if len(lines) < 3 || lines[1] != "600 "+strconv.Itoa(uid) || lines[2] != "700 "+strconv.Itoa(uid) {
			t.Fatalf("socket and directory modes: %q, want 600 and 700 owned by %d", lines, uid)
		}
		sock = strings.TrimPrefix(lines[0], "sock=")
		eventually(t, 5*time.Second, "the agent socket removed", func() bool {
			_, err := os.Stat(sock)
			_, derr := os.Stat(strings.TrimSuffix(sock, "/agent.sock"))
			return os.IsNotExist(err) && os.IsNotExist(derr)
		})
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			t.Fatal("the agent socket still accepts after the session ended")
		}
	}
	// Without the request: no socket, no agent.
	out, err := output(t, c, false, `echo "sock=$SSH_AUTH_SOCK"; ssh-add -l`)
	if err == nil || !strings.Contains(out, "sock=\n") || strings.Contains(out, fp) {
		t.Fatalf("a session that did not ask has an agent: %v\n%s", err, out)
	}
	eventually(t, 10*time.Second, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseG+2 })
}

// Agent forwarding is refused after the session started, twice, and to a
// certificate without permit-agent-forwarding.
func TestAgentForwardingRefused(t *testing.T) {
	ca := newSigner(t)
	f := newFixture(t, "cert-authority "+string(ssh.MarshalAuthorizedKey(ca.PublicKey())), nil)
	c, _ := agentClient(t, f, f.user.signer)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := sshagent.RequestAgentForwarding(s); err != nil {
		t.Fatalf("first request: %v", err)
	}
	if err := sshagent.RequestAgentForwarding(s); err == nil {
		t.Fatal("a second agent request was accepted")
	}
	stdin, _ := s.StdinPipe()
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.SendRequest(agentRequest, true, nil); ok || err != nil {
		t.Fatalf("agent request after the start: ok %v err %v", ok, err)
	}
	stdin.Close()

	noAgent := map[string]string{"permit-pty": ""}
	userKey := newSigner(t)
	now := time.Now()
	cert := signCert(t, userKey.PublicKey(), certSpec{name: "no-agent", principals: []string{"x"}, certType: ssh.UserCert,
		after: now.Add(-time.Hour), before: now.Add(time.Hour), extensions: noAgent, ca: ca})
	cs, err := ssh.NewCertSigner(cert, userKey)
	if err != nil {
		t.Fatal(err)
	}
	cc, _ := agentClient(t, f, cs)
	if _, err := output(t, cc, true, "true"); err == nil {
		t.Fatal("agent forwarding accepted for a certificate without permit-agent-forwarding")
	}
	cert = signCert(t, userKey.PublicKey(), certSpec{name: "agent", principals: []string{"x"}, certType: ssh.UserCert,
		after: now.Add(-time.Hour), before: now.Add(time.Hour), extensions: allPermits, ca: ca})
	cs, _ = ssh.NewCertSigner(cert, userKey)
	cc, _ = agentClient(t, f, cs)
	if out, err := output(t, cc, true, `test -S "$SSH_AUTH_SOCK"`); err != nil {
		t.Fatalf("agent forwarding refused with permit-agent-forwarding: %v %s", err, out)
	}
}
