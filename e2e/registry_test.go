package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store/postgres/pgtest"
)

// The shared container registry end to end: two gates on one PostgreSQL
// and one Docker engine (each with its own data directory), users going
// straight to either gate.

type registryWorld struct {
	a, b *harness.Gate
	env  []string
	tag  string
}

// heartbeat and expiry of the gates in these tests: a dead gate counts as
// dead after 4 s (16 beats: a loaded machine does not kill a live gate).
const registryYAML = "  heartbeat: 250ms\n  heartbeat_expiry: 4s\n"

func newRegistryWorld(t *testing.T) *registryWorld {
	t.Helper()
	gateOnly(t)
	harness.RequireDocker(t)
	harness.RequireTools(t, "ssh", "ssh-keygen")
	harness.AgentBinary(t)
	dsn, pwFile := pgtest.Config(t, pgtest.Schema(t))
	cfg := filepath.Join(t.TempDir(), "sshgate.yaml")
	yaml := "store:\n  driver: postgres\n  dsn: '" + dsn + "'\n  password_file: '" + pwFile + "'\n" + registryYAML
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"SSHGATE_CONFIG=" + cfg}
	w := &registryWorld{env: env, tag: gate.NewRef()}
	w.a = harness.StartGate(t, harness.GateOptions{Env: env})
	w.b = harness.StartGate(t, harness.GateOptions{Env: env})
	w.a.Admin(t, "env", "add", "dev")
	return w
}

// target adds a docker target NAME-TAG (through gate A: the store is one).
func (w *registryWorld) target(t *testing.T, name string, flags ...string) string {
	t.Helper()
	name = name + "-" + w.tag
	w.a.Admin(t, append([]string{"target", "add", name, "--env", "dev", "--login", "user", "--docker", harness.TestImage, "--user", "1000"}, flags...)...)
	return name
}

// user adds a user granted the targets and returns its clients for A and B.
func (w *registryWorld) user(t *testing.T, name string, targets ...string) (viaA, viaB *harness.Client) {
	t.Helper()
	viaA = w.a.AddUser(t, name)
	for _, tg := range targets {
		w.a.Admin(t, "grant", name, "--target", tg)
	}
	return viaA, w.b.Client(name, viaA.Key)
}

func mustSSH(t *testing.T, c *harness.Client, target, cmd string) string {
	t.Helper()
	r := harness.Run(c.SSHTo(target, nil, cmd), nil, short)
	if r.Code != 0 {
		t.Fatalf("%s on %s: exit %d stdout %q stderr %q", cmd, target, r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// A per-user container started through gate A is reused through gate B
// (the files written through A are there); A does not reap it
// while B serves it past its idle TTL; when A drains (SIGTERM) it hands
// the container over instead of removing it, B adopts it for the next
// connection, and B's reaper removes it after its idle TTL.
func TestRegistryPerUserSharedAndHandedOver(t *testing.T) {
	w := newRegistryWorld(t)
	name := w.target(t, "shared", "--per", "user", "--idle-ttl", "4s")
	viaA, viaB := w.user(t, "alice", name)

	t0 := time.Now()
	host := mustSSH(t, viaA, name, "echo kept > /tmp/marker; cat /proc/sys/kernel/random/uuid | tee /tmp/id")
	cold := time.Since(t0)
	t0 = time.Now()
	if got := mustSSH(t, viaB, name, "cat /tmp/marker /tmp/id"); got != "kept\n"+host {
		t.Fatalf("through B: %q, want the container A started (%q)", got, "kept\n"+host)
	}
	shared := time.Since(t0)
	t0 = time.Now()
	mustSSH(t, viaA, name, "true")
	t.Logf("ssh exit: cold through A %s, A's container through B %s, warm through A %s",
		cold.Round(time.Millisecond), shared.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	if ids := containersOf(t, name); len(ids) != 1 {
		t.Fatalf("containers after A then B: %v, want one", ids)
	}
	// Through B for longer than the idle TTL: A, the owner, keeps it.
	if got := mustSSH(t, viaB, name, "sleep 6; cat /tmp/marker"); got != "kept\n" {
		t.Fatalf("a session through B past the TTL: %q", got)
	}
	if !strings.Contains(w.b.Stderr.String(), "per-user container found in the registry") {
		t.Errorf("gate B did not log the registry's container")
	}

	// A drains: the container stays, free, for B.
	if err := w.a.Stop(); err != nil {
		t.Fatalf("gate A: %v", err)
	}
	if !w.a.LogContains("per-user containers handed over to the other gates") {
		t.Errorf("gate A did not log the hand-over")
	}
	if ids := containersOf(t, name); len(ids) != 1 {
		t.Fatalf("containers after A drained: %v, want the one handed over", ids)
	}
	if got := mustSSH(t, viaB, name, "cat /tmp/marker /tmp/id"); got != "kept\n"+host {
		t.Fatalf("through B after A drained: %q, want the handed-over container", got)
	}
	waitNoContainers(t, name, 30*time.Second) // B's reaper, after the idle TTL
}

// First connections of one user through both gates at once get one
// container: both sessions run in it (the id the first one wrote, with
// noclobber, is what both read), and no second one was started (the gate
// that finds the other's placeholder waits for its container).
func TestRegistryConcurrentFirstConnections(t *testing.T) {
	w := newRegistryWorld(t)
	name := w.target(t, "race", "--per", "user", "--idle-ttl", "30s")
	const cmd = "(set -C; cat /proc/sys/kernel/random/uuid > /tmp/id) 2>/dev/null; sleep 1; cat /tmp/id"
	for i, u := range []string{"bob", "carol", "dave"} {
		viaA, viaB := w.user(t, u, name)
		ch := make(chan harness.Result, 2)
		for _, c := range []*harness.Client{viaA, viaB} {
			cmd := c.SSHTo(name, nil, cmd)
			go func() { ch <- harness.Run(cmd, nil, short) }()
		}
		r1, r2 := <-ch, <-ch
		if r1.Code != 0 || r2.Code != 0 || len(r1.Stdout) < 30 {
			t.Fatalf("round %d: exit %d %q %q / exit %d %q %q", i, r1.Code, r1.Stdout, r1.Stderr, r2.Code, r2.Stdout, r2.Stderr)
		}
		if r1.Stdout != r2.Stdout {
			t.Fatalf("round %d (%s): the two sessions ran in two containers (%q, %q), want one", i, u, r1.Stdout, r2.Stdout)
		}
		if list, _ := harness.DockerPS(context.Background(), "sshgate.target="+name, "sshgate.user="+u); len(list) != 1 {
			t.Fatalf("round %d (%s): %d containers, want one", i, u, len(list))
		}
	}
	logs := w.a.Stderr.String() + w.b.Stderr.String()
	if lost := strings.Count(logs, "another gate started this user's container first"); lost != 0 {
		t.Errorf("%d second containers started (then removed): the placeholder should have made the gate wait", lost)
	}
	t.Logf("rounds where one gate waited for the other's container: %d of 3", strings.Count(logs, "another gate is starting this user's container"))
}

// kill -9 of gate A: once A's heartbeat has expired B reaps the
// per-connection container of the session that was running on A, but not
// A's per-user container before its idle TTL: the user's next connection,
// through B, adopts it (the file written through A is there); B's reaper
// removes it after its TTL; nothing is left.
func TestRegistryDeadGateReaped(t *testing.T) {
	w := newRegistryWorld(t)
	perUser := w.target(t, "dead-user", "--per", "user", "--idle-ttl", "12s")
	perConn := w.target(t, "dead-conn")
	viaA, viaB := w.user(t, "erin", perUser, perConn)

	host := mustSSH(t, viaA, perUser, "echo kept > /tmp/marker; cat /proc/sys/kernel/random/uuid | tee /tmp/id")
	sess := viaA.SSHTo(perConn, nil, "echo up; sleep 600")
	out := &harness.Buffer{}
	sess.Stdout = out
	if err := sess.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sess.Process.Kill()
		sess.Wait()
	}()
	if !out.WaitFor("up", short) {
		t.Fatalf("per-connection session did not start; gate A:\n%s", w.a.Stderr.String())
	}
	if n := len(containersOf(t, perUser)) + len(containersOf(t, perConn)); n != 2 {
		t.Fatalf("%d containers before the kill, want 2", n)
	}
	if err := syscall.Kill(w.a.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(10*time.Second, w.a.Exited)
	killed := time.Now()
	waitNoContainers(t, perConn, 30*time.Second)
	t.Logf("gate B reaped the dead gate's per-connection container %s after the kill (heartbeat expiry 4s)", time.Since(killed).Round(100*time.Millisecond))
	if !w.b.LogContains("its gate is gone") {
		t.Errorf("gate B did not log why it removed it")
	}
	if ids := containersOf(t, perUser); len(ids) != 1 {
		t.Fatalf("the dead gate's per-user container was reaped before its idle TTL: %v", ids)
	}
	if got := mustSSH(t, viaB, perUser, "cat /tmp/marker /tmp/id"); got != "kept\n"+host {
		t.Fatalf("through B after A died: %q, want A's container (%q)", got, "kept\n"+host)
	}
	waitNoContainers(t, perUser, 40*time.Second) // B's now: reaped after its TTL
}
