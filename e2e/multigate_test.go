package e2e_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// copyTree copies src (a file or directory) to dst with modes kept.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if _, err := os.Stat(src); os.IsNotExist(err) {
		return
	}
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s: %v: %s", src, err, out)
	}
}

type cluster struct {
	a, b  *harness.Gate
	lb    *harness.HAProxy
	alice *harness.Client // through the balancer, from 127.0.0.5
}

// newCluster starts two gates on one PostgreSQL (dsn, pwFile) with the same
// host keys, gate key and CA keys (copied from A's data directory, as an
// operator copies them from a secret store), PROXY protocol trusted from
// 127.0.0.1 only, behind HAProxy with send-proxy-v2 and /readyz checks.
func newCluster(t *testing.T, dsn, pwFile, extra string) *cluster {
	t.Helper()
	gateOnly(t)
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen", "haproxy")
	cfg := filepath.Join(t.TempDir(), "sshgate.yaml")
	yaml := "store:\n  driver: postgres\n  dsn: '" + dsn + "'\n"
	if pwFile != "" {
		yaml += "  password_file: '" + pwFile + "'\n"
	}
	yaml += "ssh:\n  proxy_protocol:\n    trusted: [127.0.0.1/32]\n" + extra
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"SSHGATE_CONFIG=" + cfg}
	aMetrics, bMetrics := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	a := harness.StartGate(t, harness.GateOptions{Env: env, Args: []string{"--metrics-listen", aMetrics}})
	bDir := filepath.Join(t.TempDir(), "data-b")
	if err := os.MkdirAll(bDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"host_keys", "gate_key", "gate_key.pub", "ca"} {
		copyTree(t, filepath.Join(a.DataDir, f), filepath.Join(bDir, f))
	}
	b := harness.StartGate(t, harness.GateOptions{DataDir: bDir, Env: env, Args: []string{"--metrics-listen", bMetrics}})
	if a.HostKey != b.HostKey || a.GateKey(t) != b.GateKey(t) {
		t.Fatalf("the gates' host or gate keys differ")
	}
	lb := harness.StartHAProxy(t, []harness.HAProxyBackend{{Addr: a.Addr, Health: aMetrics}, {Addr: b.Addr, Health: bMetrics}}, 300*time.Millisecond)
	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	sshd.Authorize(t, a.GateKey(t))
	a.Admin(t, "env", "add", "prod")
	a.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := a.AddUser(t, "alice")
	a.Admin(t, "grant", "alice", "--target", "web-1", "--login", "root")
	// known_hosts for the balancer's port: the one host key of both gates.
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if _, err := harness.WriteKnownHosts(kh, "127.0.0.1", lb.Port, filepath.Join(a.DataDir, "host_keys", "ssh_host_ed25519_key.pub")); err != nil {
		t.Fatal(err)
	}
	c := &harness.Client{Host: "127.0.0.1", Port: lb.Port, User: "alice", Key: alice.Key, KnownHosts: kh, Opts: []string{"BindAddress=127.0.0.5"}}
	return &cluster{a: a, b: b, lb: lb, alice: c}
}

func auditLines(t *testing.T, g *harness.Gate) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(g.DataDir, "audit", "audit.jsonl"))
	return string(b)
}

// Two gates behind HAProxy with PROXY v2: logins land on both, with the
// same host key, targets and keys; both see (and audit) the client's real
// address, never the balancer's; a header from an untrusted source is
// refused and its forged address is audited nowhere; a ban earned through
// one gate refuses the source on the other; kill -9 of one gate ends its
// sessions and new logins reach the other within the check interval.
func TestHAProxyTwoGates(t *testing.T) {
	dsn, pwFile := pgtestConfig(t)
	c := newCluster(t, dsn, pwFile, "penalties:\n  authfail: 15s\n  threshold: 30s\n  ban: 10m\n  refresh: 200ms\n")

	for i := 0; i < 20; i++ {
		r := harness.MustRun(t, c.alice.SSHTo("web-1", nil, "echo", "ok"), nil, short)
		if r.Stdout != "ok\n" {
			t.Fatalf("login %d: %q %q", i, r.Stdout, r.Stderr)
		}
	}
	for _, g := range []*harness.Gate{c.a, c.b} {
		logins := strings.Count(g.Stderr.String(), "remote=127.0.0.5:")
		if logins == 0 {
			t.Errorf("gate %s served none of the 20 logins", g.Addr)
		}
		aud := auditLines(t, g)
		if !strings.Contains(aud, `"client_addr":"127.0.0.5:`) {
			t.Errorf("gate %s audit lacks the client's real address", g.Addr)
		}
		if strings.Contains(aud, `"client_addr":"127.0.0.1:`) {
			t.Errorf("gate %s audited the balancer's address as a client", g.Addr)
		}
		t.Logf("gate %s: %d of the connections", g.Addr, logins)
	}

	// A forged header straight from an untrusted source (127.0.0.7 is not
	// 127.0.0.1/32): closed, and its address reaches no audit.
	for _, g := range []*harness.Gate{c.a, c.b} {
		conn, err := dialFrom("127.0.0.7", g.Addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("PROXY TCP4 203.0.113.66 127.0.0.1 4242 22\r\nSSH-2.0-OpenSSH_9.2\r\n"))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, conn)
		conn.Close()
		if !harness.Eventually(10*time.Second, func() bool { return g.LogContains("PROXY protocol header from an untrusted source") }) {
			t.Errorf("gate %s did not log the refused header", g.Addr)
		}
	}

	// Failed logins from 127.0.0.6 through the balancer earn a ban; both
	// gates refuse the source.
	mallory, _ := harness.Keygen(t, t.TempDir(), "id_mallory")
	from := func(cl *harness.Client, ip string) *harness.Client {
		n := *cl
		n.Opts = []string{"BindAddress=" + ip}
		return &n
	}
	brute := from(c.alice, "127.0.0.6").WithKey(mallory)
	// Penalties add up per gate (bans are shared through the store): five
	// round-robin attempts give one gate at least three, over threshold.
	for i := 0; i < 5; i++ {
		if r := harness.Run(brute.SSHTo("web-1", nil, "true"), nil, short); r.Code != 255 {
			t.Fatalf("wrong key %d: exit %d", i, r.Code)
		}
	}
	fromBanned := from(c.alice, "127.0.0.6")
	for _, g := range []*harness.Gate{c.a, c.b} {
		direct := *fromBanned
		direct.Port = g.Port
		// Straight to the gate (no balancer, so no header from a trusted
		// source): from 127.0.0.6 it is a plain client of its own address.
		direct.KnownHosts = g.KnownHosts
		if !harness.Eventually(10*time.Second, func() bool {
			return harness.Run(direct.SSHTo("web-1", nil, "true"), nil, short).Code == 255
		}) {
			t.Errorf("gate %s still serves the banned source", g.Addr)
		}
	}
	for _, g := range []*harness.Gate{c.a, c.b} {
		if strings.Contains(auditLines(t, g), "203.0.113.66") {
			t.Errorf("gate %s audited the forged address", g.Addr)
		}
	}

	// kill -9 of gate A mid-session: its session ends; new logins all reach B.
	var onA *exec.Cmd
	for i := 0; i < 6 && onA == nil; i++ {
		cmd := c.alice.SSHTo("web-1", nil, "echo up; sleep 300")
		out := &harness.Buffer{}
		cmd.Stdout = out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if !out.WaitFor("up", short) {
			t.Fatal("session did not start")
		}
		if harness.Eventually(2*time.Second, func() bool {
			return strings.Count(c.a.Stderr.String(), "session started") > strings.Count(c.a.Stderr.String(), "session ended")
		}) {
			onA = cmd
			break
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	if onA == nil {
		t.Fatal("no session landed on gate A")
	}
	syscall.Kill(c.a.PID(), syscall.SIGKILL)
	done := make(chan error, 1)
	go func() { done <- onA.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		onA.Process.Kill()
		t.Fatal("a session on the killed gate did not end")
	}
	start := time.Now()
	failed := 0
	for i := 0; i < 6; i++ {
		if r := harness.Run(c.alice.SSHTo("web-1", nil, "echo", "ok"), nil, short); r.Stdout != "ok\n" {
			failed++
		}
	}
	t.Logf("after kill -9 of A: %d of 6 logins failed, %s", failed, time.Since(start).Round(time.Millisecond))
	if failed > 2 {
		t.Errorf("%d of 6 logins failed after gate A died (check interval %s)", failed, c.lb.CheckInterval)
	}
}

func pgtestConfig(t *testing.T) (string, string) {
	t.Helper()
	return pgConfig(t)
}
