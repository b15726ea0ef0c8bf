package e2e_test

import (
	"context"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/gate"
)

// The docker backend end to end: the built gate, real OpenSSH clients, a
// real engine and the local busybox image; sshgate-agent inside.

type dockerWorld struct {
	gate  *harness.Gate
	alice *harness.Client
	tag   string // unique suffix of this test's target names
}

// newDockerWorld starts a gate (with opts, if given) and user alice.
func newDockerWorld(t *testing.T, opts ...harness.GateOptions) *dockerWorld {
	t.Helper()
	harness.RequireDocker(t)
	if directMode {
		t.Skip("docker targets need the gate")
	}
	harness.AgentBinary(t) // beside the gate binary, where the gate looks for it
	var o harness.GateOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	g := harness.StartGate(t, o)
	g.Admin(t, "env", "add", "dev")
	w := &dockerWorld{gate: g, alice: g.AddUser(t, "alice"), tag: gate.NewRef()}
	return w
}

// target adds a docker target NAME-TAG granted to alice and returns its name.
func (w *dockerWorld) target(t *testing.T, name string, flags ...string) string {
	t.Helper()
	name = name + "-" + w.tag
	args := append([]string{"target", "add", name, "--env", "dev", "--login", "user"}, flags...)
	w.gate.Admin(t, args...)
	w.gate.Admin(t, "grant", "alice", "--target", name)
	return name
}

// ssh runs a command on target and skips the test when this gate has no
// docker backend wired in.
func (w *dockerWorld) ssh(t *testing.T, target string, stdin []byte, cmd string) harness.Result {
	t.Helper()
	r := harness.Run(w.alice.SSHTo(target, nil, cmd), stdin, short)
	if strings.Contains(r.Stderr, "is not available on this gate") {
		t.Skipf("the gate has no docker backend wired in: %s", strings.TrimSpace(r.Stderr))
	}
	return r
}

// containersOf lists the ids of target's containers, in every state.
func containersOf(t *testing.T, target string) []string {
	t.Helper()
	list, err := harness.DockerPS(context.Background(), "sshgate.target="+target)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(list))
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	return ids
}

// runningWith counts the running containers carrying all the labels.
func runningWith(labels ...string) int {
	list, _ := harness.DockerPS(context.Background(), labels...)
	n := 0
	for _, c := range list {
		if c.Running {
			n++
		}
	}
	return n
}

func waitNoContainers(t *testing.T, target string, d time.Duration) {
	t.Helper()
	if !harness.Eventually(d, func() bool { return len(containersOf(t, target)) == 0 }) {
		t.Fatalf("containers of %s still there after %s: %v", target, d, containersOf(t, target))
	}
}

var statusLine = regexp.MustCompile(`(?m)^(CapEff|NoNewPrivs|Seccomp):\s+(\S+)$`)

func TestDockerTarget(t *testing.T) {
	w := newDockerWorld(t)
	name := w.target(t, "box", "--docker", harness.TestImage, "--user", "1000:1000", "--memory", "64m", "--pids", "64")

	r := w.ssh(t, name, nil, "id -u; grep -E 'CapEff|NoNewPrivs|Seccomp' /proc/self/status")
	if r.Code != 0 {
		t.Fatalf("exit %d, stderr %q", r.Code, r.Stderr)
	}
	if !strings.HasPrefix(r.Stdout, "1000\n") {
		t.Errorf("uid: %q", r.Stdout)
	}
	got := map[string]string{}
	for _, m := range statusLine.FindAllStringSubmatch(r.Stdout, -1) {
		got[m[1]] = m[2]
	}
	if got["CapEff"] != "0000000000000000" || got["NoNewPrivs"] != "1" || got["Seccomp"] != "2" {
		t.Errorf("confinement: %v", got)
	}

	r = w.ssh(t, name, []byte("0123456789"), "wc -c; echo err >&2; exit 3")
	if r.Code != 3 || strings.TrimSpace(r.Stdout) != "10" || r.Stderr != "err\n" {
		t.Errorf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}

	// SFTP, served by the agent (the image has no sftp-server).
	batch := "put /etc/hostname /tmp/up\nls -l /tmp/up\n"
	sr := harness.Run(w.alice.SFTP("-b", "-", w.alice.Dest(name)), []byte(batch), short)
	if sr.Code != 0 || !strings.Contains(sr.Stdout, "/tmp/up") {
		t.Errorf("sftp: exit %d stdout %q stderr %q", sr.Code, sr.Stdout, sr.Stderr)
	}

	// Per connection: every container is gone once the clients are.
	waitNoContainers(t, name, 30*time.Second)
}

func TestDockerTargetErrors(t *testing.T) {
	w := newDockerWorld(t)
	// target add refuses an image the engine lacks (the gate never pulls);
	// one added anyway fails at connect time with the image named.
	args := []string{"target", "add", "nope-" + w.tag, "--env", "dev", "--login", "user", "--docker", "sshgate-test/missing:latest"}
	if _, se, code := w.gate.AdminResult(args...); code != 1 || !strings.Contains(se, `image "sshgate-test/missing:latest" is not on the Docker engine`) ||
		!strings.Contains(se, "never pulls images") {
		t.Errorf("target add with a missing image: exit %d %q", code, se)
	}
	name := w.target(t, "nope", "--docker", "sshgate-test/missing:latest", "--skip-image-check")
	r := w.ssh(t, name, nil, "true")
	want := `container for ` + name + ` could not start: image "sshgate-test/missing:latest" not found`
	if r.Code == 0 || !strings.Contains(r.Stderr, want) {
		t.Errorf("missing image: exit %d stderr %q, want %q", r.Code, r.Stderr, want)
	}
	noGoError(t, "missing image", r.Stderr)
	if r.Stdout != "" {
		t.Errorf("error text on stdout: %q", r.Stdout)
	}
	waitNoContainers(t, name, 10*time.Second)
}

func TestDockerPerUser(t *testing.T) {
	w := newDockerWorld(t)
	name := w.target(t, "dev", "--docker", harness.TestImage, "--user", "1000", "--per", "user", "--idle-ttl", "3s")
	if r := w.ssh(t, name, nil, "echo kept > /tmp/marker"); r.Code != 0 {
		t.Fatalf("exit %d stderr %q", r.Code, r.Stderr)
	}
	first := containersOf(t, name)
	r := w.ssh(t, name, nil, "cat /tmp/marker")
	if r.Code != 0 || r.Stdout != "kept\n" {
		t.Errorf("second connection: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// Later connections into the kept container are served by its keeper
	// agent over the gate's warm socket: no agent exec'd for them, so the
	// command's shell is PID 1's child; exit codes pass through.
	for i := 0; i < 3; i++ {
		r := w.ssh(t, name, nil, "cat /tmp/marker; echo ppid=$PPID; exit 3")
		if r.Code != 3 || r.Stdout != "kept\nppid=1\n" {
			t.Errorf("connection %d: exit %d stdout %q stderr %q, want 3 and the keeper agent as parent", i+3, r.Code, r.Stdout, r.Stderr)
		}
	}
	if now := containersOf(t, name); len(first) != 1 || strings.Join(now, ",") != strings.Join(first, ",") {
		t.Errorf("containers %v then %v, want the same one", first, now)
	}
	waitNoContainers(t, name, 30*time.Second) // reaped after the idle TTL
}

// SIGKILL with 3 live per-connection containers, then a restart on the same
// data directory: the new gate reaps the orphans and serves.
func TestDockerOrphansAfterKill(t *testing.T) {
	w := newDockerWorld(t)
	name := w.target(t, "orphan", "--docker", harness.TestImage, "--user", "1000")
	w.ssh(t, name, nil, "true") // skips when there is no docker backend
	waitNoContainers(t, name, 30*time.Second)
	const live = 3
	for i := 0; i < live; i++ {
		sess := w.alice.SSHTo(name, nil, "sleep 600")
		if err := sess.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			sess.Process.Kill()
			sess.Wait()
		}()
	}
	if !harness.Eventually(short, func() bool { return len(containersOf(t, name)) == live }) {
		if strings.Contains(w.gate.Stderr.String(), "is not available on this gate") {
			t.Skip("the gate has no docker backend wired in")
		}
		t.Fatalf("no container for the session; gate log:\n%s", w.gate.Stderr.String())
	}
	// kill -9: the gate cannot clean up.
	if err := syscall.Kill(w.gate.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(10*time.Second, w.gate.Exited)
	// The restarted gate (same data directory) removes what the dead one
	// left, and serves.
	g := harness.StartGate(t, harness.GateOptions{DataDir: w.gate.DataDir})
	waitNoContainers(t, name, 30*time.Second)
	if r := harness.Run(g.Client("alice", w.alice.Key).SSHTo(name, nil, "echo served"), nil, short); r.Code != 0 || r.Stdout != "served\n" {
		t.Errorf("the restarted gate: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	waitNoContainers(t, name, 30*time.Second)
}

func TestDockerPool(t *testing.T) {
	w := newDockerWorld(t)
	name := w.target(t, "pool", "--docker", harness.TestImage, "--user", "1000", "--pool", "1")
	// PID 1 of a cold container is the agent dialling the gate once; a pool
	// container's is the long-lived agent that keeps a spare connection to
	// the gate's warm socket and serves each connection itself: no exec, so
	// the command's shell is PID 1's child.
	if r := w.ssh(t, name, nil, "tr '\\0' ' ' < /proc/1/cmdline"); r.Code != 0 || !strings.Contains(r.Stdout, "--dial") {
		t.Fatalf("first (cold) connection: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	pooled := func() bool {
		return runningWith("sshgate.target="+name, "sshgate.pool=1") == 1
	}
	if !harness.Eventually(short, pooled) {
		t.Fatal("the pool did not fill")
	}
	r := w.ssh(t, name, nil, "tr '\\0' ' ' < /proc/1/cmdline; echo; echo ppid=$PPID; id -u")
	if r.Code != 0 || !strings.Contains(r.Stdout, "--dial-each") || !strings.HasSuffix(r.Stdout, "\n1000\n") {
		t.Fatalf("second connection not served by the pool container: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "\nppid=1\n") {
		t.Fatalf("second connection: the shell's parent is not the keeper agent (an agent was exec'd for it): %q", r.Stdout)
	}
	if !harness.Eventually(short, pooled) {
		t.Fatal("the pool was not refilled")
	}
}
