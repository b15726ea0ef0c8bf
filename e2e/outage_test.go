package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// PostgreSQL stopped under a running gate: a live session goes on, a new
// login fails with one "try again" line and a reference, and logins work
// again once the server is back.
func TestPostgresOutage(t *testing.T) {
	gateOnly(t)
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	pg := harness.StartPrivatePostgres(t)
	cfg := filepath.Join(t.TempDir(), "sshgate.yaml")
	if err := os.WriteFile(cfg, []byte("store:\n  driver: postgres\n  dsn: '"+pg.DSN+"'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := harness.StartGate(t, harness.GateOptions{Env: []string{"SSHGATE_CONFIG=" + cfg}})
	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	sshd.Authorize(t, g.GateKey(t))
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := g.AddUser(t, "alice")
	g.Admin(t, "grant", "alice", "--target", "web-1", "--login", "root")

	live := alice.SSHTo("web-1", nil, "echo up; read line; echo got $line")
	out := &harness.Buffer{}
	live.Stdout = out
	stdin, _ := live.StdinPipe()
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Process.Kill(); live.Wait() })
	if !out.WaitFor("up", short) {
		t.Fatal("live session did not start")
	}

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	r := harness.Run(alice.SSHTo("web-1", nil, "true"), nil, short)
	if r.Code != 255 {
		t.Fatalf("login during the outage: exit %d", r.Code)
	}
	want := "sshgate: service temporarily unavailable, try again (ref "
	if n := strings.Count(r.Stderr, want); n != 1 {
		t.Fatalf("login during the outage: the line %d times in %q", n, r.Stderr)
	}
	noGoError(t, "outage stderr", r.Stderr)
	if !strings.Contains(g.Stderr.String(), "login failed: store unavailable") {
		t.Error("the gate did not log the cause")
	}

	// The live session still relays.
	stdin.Write([]byte("still-here\n"))
	if !out.WaitFor("got still-here", short) {
		t.Fatalf("live session did not survive the outage: %q", out.String())
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(30*time.Second, func() bool {
		return harness.Run(alice.SSHTo("web-1", nil, "echo", "ok"), nil, short).Stdout == "ok\n"
	}) {
		t.Fatal("logins did not work again after PostgreSQL came back")
	}
	if err := live.Wait(); err != nil {
		t.Fatalf("live session: %v", err)
	}
}
