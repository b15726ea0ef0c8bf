package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target"
	"github.com/sshgate/sshgate/internal/target/docker"
)

const testImage = "sshgate-test/busybox:latest"

var (
	agentPath string
	skipWhy   string
	api       *client.Client
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "sshgate-docker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if err := setup(tmp); err != nil {
		skipWhy = err.Error()
	}
	return m.Run()
}

func setup(tmp string) error {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("no Docker engine: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		return fmt.Errorf("no Docker engine reachable (%v); run scripts/test-setup.sh", err)
	}
	api = c
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %v", err)
	}
	modDir := filepath.Dir(strings.TrimSpace(string(root)))
	agentPath = filepath.Join(tmp, "sshgate-agent")
	build := exec.Command("go", "build", "-o", agentPath, "./cmd/sshgate-agent")
	build.Dir = modDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		// A broken agent is a failure, not a reason to skip.
		fmt.Fprintf(os.Stderr, "build sshgate-agent: %v\n%s", err, out)
		os.Exit(1)
	}
	if _, err := c.ImageInspect(ctx, testImage); err != nil {
		// Build it as scripts/test-setup.sh does.
		bctx := filepath.Join(tmp, "image")
		bb, _ := exec.LookPath("busybox")
		if bb == "" {
			return fmt.Errorf("image %s missing and no busybox to build it; run scripts/test-setup.sh", testImage)
		}
		cmd := exec.Command("bash", filepath.Join(modDir, "e2e/images/busybox/make-rootfs.sh"), bb, bctx)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("image %s missing; make-rootfs: %v: %s", testImage, err, out)
		}
		cmd = exec.Command("docker", "build", "-q", "--network", "none", "-t", testImage, bctx)
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("image %s missing; docker build: %v: %s", testImage, err, out)
		}
	}
	return nil
}

func needDocker(t testing.TB) {
	t.Helper()
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
}

// syncBuffer collects log output from several goroutines.
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

type env struct {
	logs   *syncBuffer
	t      testing.TB
	b      *docker.Backend
	cfg    docker.Config
	gateID string
}

func newEnv(t testing.TB, mod func(*docker.Config)) *env {
	t.Helper()
	needDocker(t)
	data := t.TempDir()
	logs := &syncBuffer{}
	cfg := docker.Config{
		AgentPath:     agentPath,
		ContainersDir: filepath.Join(data, "containers"),
		GateID:        "test-" + gate.NewRef(),
		Logger:        slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
		ReapInterval:  100 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := docker.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, b: b, cfg: cfg, gateID: cfg.GateID, logs: logs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if ids := e.containers(); len(ids) != 0 {
			t.Errorf("containers left after Close: %v", ids)
			for _, id := range ids {
				_ = api.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
			}
		}
	})
	return e
}

// containers lists every container (running or not) of this gate.
func (e *env) containers(labels ...string) []string {
	e.t.Helper()
	f := filters.NewArgs(filters.Arg("label", docker.LabelGate+"="+e.gateID))
	for _, l := range labels {
		f.Add("label", l)
	}
	list, err := api.ContainerList(context.Background(), container.ListOptions{All: true, Filters: f})
	if err != nil {
		e.t.Fatalf("list containers: %v", err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	return ids
}

func (e *env) dirs() []string {
	ents, _ := os.ReadDir(e.cfg.ContainersDir)
	var out []string
	for _, d := range ents {
		out = append(out, d.Name())
	}
	return out
}

func (e *env) assertEmpty() {
	e.t.Helper()
	if ids := e.containers(); len(ids) != 0 {
		e.t.Errorf("containers left: %v", ids)
	}
	if d := e.dirs(); len(d) != 0 {
		e.t.Errorf("directories left in %s: %v", e.cfg.ContainersDir, d)
	}
}

func dockerTarget(name string, spec gate.DockerSpec) gate.Target {
	if spec.Image == "" {
		spec.Image = testImage
	}
	return gate.Target{Name: name, Kind: gate.KindDocker, Login: "user", Docker: &spec}
}

func request(t gate.Target, user string) target.Request {
	return target.Request{Target: t, ID: &gate.Identity{User: user, Method: "publickey"}, ConnID: gate.NewID()}
}

func (e *env) open(t gate.Target, user string) *target.Upstream {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	up, err := e.b.Open(ctx, request(t, user))
	if err != nil {
		e.t.Fatalf("Open %s: %v", t.Name, err)
	}
	e.t.Cleanup(func() { _ = up.Release(context.Background()) })
	return up
}

func handshake(t testing.TB, up *target.Upstream) *ssh.Client {
	t.Helper()
	if up.Client.HostKeyCallback == nil {
		t.Fatal("no HostKeyCallback")
	}
	c, chans, reqs, err := ssh.NewClientConn(up.Conn, "container", up.Client)
	if err != nil {
		t.Fatalf("SSH handshake with the agent: %v", err)
	}
	cl := ssh.NewClient(c, chans, reqs)
	t.Cleanup(func() { cl.Close() })
	return cl
}

func run(t testing.TB, c *ssh.Client, cmd string) (string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	err = s.Run(cmd)
	if err != nil {
		return out.String(), fmt.Errorf("%w (stderr %q)", err, errb.String())
	}
	return out.String(), nil
}

func mustRun(t testing.TB, c *ssh.Client, cmd string) string {
	t.Helper()
	out, err := run(t, c, cmd)
	if err != nil {
		t.Fatalf("run %q: %v (stdout %q)", cmd, err, out)
	}
	return out
}

var statusRE = regexp.MustCompile(`(?m)^(CapEff|NoNewPrivs|Seccomp):\s+(\S+)$`)

func checkConfinement(t testing.TB, c *ssh.Client, uid string) {
	t.Helper()
	out := mustRun(t, c, "id -u; cat /proc/self/status | grep -E 'CapEff|NoNewPrivs|Seccomp'")
	lines := strings.SplitN(out, "\n", 2)
	if strings.TrimSpace(lines[0]) != uid {
		t.Errorf("uid %q, want %s (output %q)", lines[0], uid, out)
	}
	got := map[string]string{}
	for _, m := range statusRE.FindAllStringSubmatch(out, -1) {
		got[m[1]] = m[2]
	}
	want := map[string]string{"CapEff": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (status %q)", k, got[k], v, out)
		}
	}
}

func TestOpenConfinedContainer(t *testing.T) {
	e := newEnv(t, nil)
	tg := dockerTarget("web-1", gate.DockerSpec{User: "65534:65534", Memory: 64 << 20, Pids: 64, Env: []string{"GREETING=hello there"}})
	up := e.open(tg, "alice")
	if up.Client.User != "user" || len(up.Client.HostKeyAlgorithms) != 1 || up.Client.HostKeyAlgorithms[0] != ssh.KeyAlgoED25519 {
		t.Errorf("client config: user %q, host key algorithms %v", up.Client.User, up.Client.HostKeyAlgorithms)
	}
	c := handshake(t, up)
	checkConfinement(t, c, "65534")
	if out := mustRun(t, c, "echo $GREETING"); out != "hello there\n" {
		t.Errorf("env: %q", out)
	}
	// The gate directory: read-only, the socket already gone (the listener
	// accepted one connection and closed), the key readable by its owner only.
	if out := mustRun(t, c, "ls /run/sshgate"); out != "authorized_keys\nhost_key\n" {
		t.Errorf("ls /run/sshgate: %q", out)
	}
	if out, err := run(t, c, "touch /run/sshgate/x"); err == nil {
		t.Errorf("wrote into /run/sshgate: %q", out)
	}
	if out := mustRun(t, c, "stat -c '%a %u' /run/sshgate/host_key /run/sshgate-agent"); !strings.HasPrefix(out, "400 65534\n") {
		t.Errorf("host key mode/owner: %q", out)
	}
	if out, err := run(t, c, "touch /home/x && ping -c1 -W1 10.0.0.1"); err == nil {
		t.Errorf("network reachable: %q", out)
	}

	ids := e.containers(docker.LabelUser+"=alice", docker.LabelTarget+"=web-1", docker.LabelPer+"=connection")
	if len(ids) != 1 {
		t.Fatalf("containers with labels: %v", ids)
	}
	info, err := api.ContainerInspect(context.Background(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	hc := info.HostConfig
	if hc.Privileged || hc.NetworkMode != "none" || hc.PidMode != "" || hc.IpcMode != "private" || hc.AutoRemove {
		t.Errorf("host config: privileged %v network %q pid %q ipc %q autoremove %v", hc.Privileged, hc.NetworkMode, hc.PidMode, hc.IpcMode, hc.AutoRemove)
	}
	if hc.PidsLimit == nil || *hc.PidsLimit != 64 || hc.Memory != 64<<20 {
		t.Errorf("limits: pids %v memory %d", hc.PidsLimit, hc.Memory)
	}
	if fmt.Sprint(hc.CapDrop) != "[ALL]" || len(hc.CapAdd) != 0 || fmt.Sprint(hc.SecurityOpt) != "[no-new-privileges]" {
		t.Errorf("caps %v %v secopt %v", hc.CapDrop, hc.CapAdd, hc.SecurityOpt)
	}
	if !strings.HasPrefix(info.Name, "/sshgate-web-1-") {
		t.Errorf("name %q", info.Name)
	}
	for _, m := range info.Mounts {
		if m.RW {
			t.Errorf("gate mount %s is writable", m.Destination)
		}
	}
	if st, err := os.Stat(e.cfg.ContainersDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("containers directory: %v %v, want mode 0700", st.Mode(), err)
	}
	if err := up.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := up.Release(context.Background()); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	e.assertEmpty()
}

// TestImageUserAndEntrypoint: an image's own USER is used (not root, so
// allowed) and its ENTRYPOINT does not get in the agent's way.
func TestImageUserAndEntrypoint(t *testing.T) {
	needDocker(t)
	const img = "sshgate-test/busybox-user:latest"
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	df := "FROM " + testImage + "\nUSER 1000:1000\nENTRYPOINT [\"/bin/false\"]\n"
	tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df))})
	tw.Write([]byte(df))
	tw.Close()
	resp, err := api.ImageBuild(context.Background(), &ctxTar, build.ImageBuildOptions{Tags: []string{img}, NetworkMode: "none", Remove: true})
	if err != nil {
		t.Fatalf("build %s: %v", img, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	e := newEnv(t, nil)
	c := handshake(t, e.open(dockerTarget("imguser", gate.DockerSpec{Image: img}), "alice"))
	checkConfinement(t, c, "1000")
}

func TestDefaultUserIsNotRoot(t *testing.T) {
	e := newEnv(t, nil)
	c := handshake(t, e.open(dockerTarget("t-default", gate.DockerSpec{}), "alice"))
	checkConfinement(t, c, "65534")
	c2 := handshake(t, e.open(dockerTarget("t-named", gate.DockerSpec{User: "user"}), "alice"))
	checkConfinement(t, c2, "1000")
	// A named user: the files are world-readable instead of chowned.
	if out := mustRun(t, c2, "stat -c '%a' /run/sshgate/host_key"); out != "444\n" {
		t.Errorf("host key mode %q", out)
	}

	_, err := e.b.Open(context.Background(), request(dockerTarget("t-root", gate.DockerSpec{User: "0:0"}), "alice"))
	wantPublic(t, err, "container for t-root could not start: running as root is not allowed")
}

func TestAllowRoot(t *testing.T) {
	e := newEnv(t, func(c *docker.Config) { c.AllowRoot = true })
	c := handshake(t, e.open(dockerTarget("t-root", gate.DockerSpec{User: "0"}), "alice"))
	checkConfinement(t, c, "0")
}

func wantPublic(t testing.TB, err error, text string) {
	t.Helper()
	var pe *gate.PublicError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want a *gate.PublicError %q", err, err, text)
	}
	if pe.Public != text {
		t.Fatalf("public text %q, want %q (cause %v)", pe.Public, text, pe.Cause)
	}
	if pe.Cause == nil {
		t.Errorf("no cause for the log")
	}
}

func TestOpenErrors(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	_, err := e.b.Open(ctx, request(dockerTarget("web-1", gate.DockerSpec{Image: "sshgate-test/missing:latest"}), "alice"))
	wantPublic(t, err, `container for web-1 could not start: image "sshgate-test/missing:latest" not found`)

	_, err = e.b.Open(ctx, request(dockerTarget("web-1", gate.DockerSpec{Memory: 1 << 20}), "alice"))
	wantPublic(t, err, "container for web-1 could not start: the engine refused the limits")

	_, err = e.b.Open(ctx, request(dockerTarget("web-1", gate.DockerSpec{User: "nosuchuser"}), "alice"))
	wantPublic(t, err, "container for web-1 could not start: the user does not exist in the image")

	_, err = e.b.Open(ctx, request(dockerTarget("web-1", gate.DockerSpec{Mounts: []string{"/etc:/host-etc"}}), "alice"))
	wantPublic(t, err, "container for web-1 could not start: a mount is not allowed (/etc:/host-etc)")

	_, err = e.b.Open(ctx, request(dockerTarget("web-1", gate.DockerSpec{Mounts: []string{e.cfg.ContainersDir + ":/x"}}), "alice"))
	wantPublic(t, err, fmt.Sprintf("container for web-1 could not start: a mount is not allowed (%s:/x)", e.cfg.ContainersDir))

	_, err = e.b.Open(ctx, request(dockerTarget("web-1", gate.DockerSpec{Network: "host"}), "alice"))
	wantPublic(t, err, "container for web-1 could not start: the network is not allowed")

	_, err = e.b.Open(ctx, request(dockerTarget("web-1", gate.DockerSpec{Network: "no-such-net"}), "alice"))
	wantPublic(t, err, "container for web-1 could not start: the engine could not find a resource it needs")

	e.assertEmpty()
}

func TestAgentFails(t *testing.T) {
	needDocker(t)
	fake := filepath.Join(t.TempDir(), "fake-agent")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho fake agent gives up >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *docker.Config) { c.AgentPath = fake })
	start := time.Now()
	_, err := e.b.Open(context.Background(), request(dockerTarget("web-1", gate.DockerSpec{}), "alice"))
	wantPublic(t, err, "container for web-1 could not start: its agent did not answer")
	t.Logf("failed in %s: %v", time.Since(start).Round(time.Millisecond), err)
	if !strings.Contains(err.Error(), "fake agent gives up") {
		t.Errorf("cause lacks the container output: %v", err)
	}
	e.assertEmpty()
}

func TestEngineUnreachable(t *testing.T) {
	needDocker(t)
	c, err := client.NewClientWithOpts(client.WithHost("unix://"+filepath.Join(t.TempDir(), "no.sock")), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	b, err := docker.New(docker.Config{AgentPath: agentPath, ContainersDir: t.TempDir()}, c)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	_, err = b.Open(context.Background(), request(dockerTarget("web-1", gate.DockerSpec{}), "alice"))
	wantPublic(t, err, "container for web-1 could not start: the container engine is unreachable")
}

func TestMountsAndReadonlyRootfs(t *testing.T) {
	e := newEnv(t, func(c *docker.Config) { c.ReadonlyRootfs = true })
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("shared\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := handshake(t, e.open(dockerTarget("ro", gate.DockerSpec{User: "65534:65534", Mounts: []string{src + ":/data:ro"}}), "alice"))
	if out := mustRun(t, c, "cat /data/f"); out != "shared\n" {
		t.Errorf("mount: %q", out)
	}
	if _, err := run(t, c, "touch /data/g"); err == nil {
		t.Error("wrote into a read-only mount")
	}
	if _, err := run(t, c, "touch /x"); err == nil {
		t.Error("wrote into a read-only root filesystem")
	}
	mustRun(t, c, "touch /tmp/x")
}

func TestLongContainersDir(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	e := newEnv(t, func(c *docker.Config) { c.ContainersDir = long })
	c := handshake(t, e.open(dockerTarget("long", gate.DockerSpec{User: "1000"}), "alice"))
	checkConfinement(t, c, "1000")
}

func TestConcurrentOpens(t *testing.T) {
	e := newEnv(t, nil)
	tg := dockerTarget("many", gate.DockerSpec{User: "65534:65534", Memory: 32 << 20})
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			up, err := e.b.Open(context.Background(), request(tg, fmt.Sprintf("u%d", i)))
			if err != nil {
				errs <- err
				return
			}
			defer up.Release(context.Background())
			c, chans, reqs, err := ssh.NewClientConn(up.Conn, "c", up.Client)
			if err != nil {
				errs <- err
				return
			}
			cl := ssh.NewClient(c, chans, reqs)
			defer cl.Close()
			s, err := cl.NewSession()
			if err != nil {
				errs <- err
				return
			}
			out, err := s.Output(fmt.Sprintf("echo %d", i))
			s.Close()
			if err != nil || string(out) != fmt.Sprintf("%d\n", i) {
				errs <- fmt.Errorf("exec %d: %q %v", i, out, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	e.assertEmpty()
}

// poll waits for cond, at most d.
func poll(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPerUserReuseAndIdleReap(t *testing.T) {
	e := newEnv(t, nil)
	tg := dockerTarget("dev", gate.DockerSpec{User: "1000:1000", Per: "user", IdleTTL: "2s"})
	up1 := e.open(tg, "alice")
	c1 := handshake(t, up1)
	mustRun(t, c1, "echo first > /tmp/marker")
	id1 := e.containers(docker.LabelUser + "=alice")
	up2 := e.open(tg, "alice")
	c2 := handshake(t, up2)
	if out := mustRun(t, c2, "cat /tmp/marker"); out != "first\n" {
		t.Errorf("second connection does not see the first's file: %q", out)
	}
	checkConfinement(t, c2, "1000")
	id2 := e.containers(docker.LabelUser + "=alice")
	if len(id1) != 1 || fmt.Sprint(id1) != fmt.Sprint(id2) {
		t.Fatalf("per-user container not reused: %v then %v", id1, id2)
	}
	// Another user gets another container.
	up3 := e.open(tg, "bob")
	handshake(t, up3)
	if ids := e.containers(docker.LabelPer + "=user"); len(ids) != 2 {
		t.Fatalf("want 2 per-user containers, have %v", ids)
	}
	// The first connection ending leaves the container for the second.
	c1.Close()
	up1.Release(context.Background())
	time.Sleep(2500 * time.Millisecond) // past the TTL: must stay, a connection is open
	mustRun(t, c2, "true")
	c2.Close()
	up2.Release(context.Background())
	up3.Release(context.Background())
	start := time.Now()
	poll(t, 15*time.Second, "idle per-user containers to be reaped", func() bool { return len(e.containers()) == 0 })
	t.Logf("reaped %s after the last Release (IdleTTL 2s)", time.Since(start).Round(10*time.Millisecond))
	e.assertEmpty()
}

func TestPerUserContainerGoneIsReplaced(t *testing.T) {
	e := newEnv(t, nil)
	tg := dockerTarget("dev", gate.DockerSpec{User: "1000", Per: "user"})
	up := e.open(tg, "alice")
	handshake(t, up)
	up.Release(context.Background())
	ids := e.containers()
	if len(ids) != 1 {
		t.Fatalf("containers %v", ids)
	}
	if err := api.ContainerRemove(context.Background(), ids[0], container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	c := handshake(t, e.open(tg, "alice"))
	mustRun(t, c, "true")
	if now := e.containers(); len(now) != 1 || now[0] == ids[0] {
		t.Fatalf("containers %v (old %v)", now, ids)
	}
}

func TestReapOrphans(t *testing.T) {
	e := newEnv(t, nil)
	tg := dockerTarget("orphan", gate.DockerSpec{User: "65534"})
	for range 2 {
		handshake(t, e.open(tg, "alice")) // never released: a gate killed with -9
	}
	// A leftover directory from a crash.
	if err := os.MkdirAll(filepath.Join(e.cfg.ContainersDir, "stale"), 0o700); err != nil {
		t.Fatal(err)
	}
	if n := len(e.containers()); n != 2 {
		t.Fatalf("containers %d", n)
	}
	// The restarted gate: same GateID and data directory, fresh Backend.
	cfg := e.cfg
	b2, err := docker.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close(context.Background())
	n, err := b2.ReapOrphans(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("ReapOrphans = %d, %v; want 2", n, err)
	}
	e.assertEmpty()
	// Containers of another gate are not touched.
	other := newEnv(t, nil)
	handshake(t, other.open(tg, "alice"))
	if n, err := b2.ReapOrphans(context.Background()); err != nil || n != 0 {
		t.Fatalf("ReapOrphans took another gate's containers: %d %v", n, err)
	}
	if len(other.containers()) != 1 {
		t.Fatal("another gate's container was removed")
	}
}

func TestPool(t *testing.T) {
	e := newEnv(t, nil)
	tg := dockerTarget("pooled", gate.DockerSpec{User: "65534:65534", Pool: 2})
	if err := e.b.Prewarm(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "the pool to fill", func() bool { return e.b.PoolReady(tg) == 2 })
	pooled := e.containers(docker.LabelPool + "=1")
	if len(pooled) != 2 {
		t.Fatalf("pool containers %v", pooled)
	}
	start := time.Now()
	up := e.open(tg, "alice")
	c := handshake(t, up)
	out := mustRun(t, c, "echo hi")
	t.Logf("pool: Open to first output %s", time.Since(start).Round(time.Millisecond))
	if out != "hi\n" {
		t.Fatalf("output %q", out)
	}
	checkConfinement(t, c, "65534")
	// It came from the pool: one of the two pre-started containers is the
	// one serving (its agents: the keeper and ours).
	served := ""
	for _, id := range pooled {
		top, err := api.ContainerTop(context.Background(), id, nil)
		if err == nil && len(top.Processes) >= 2 && strings.Contains(fmt.Sprint(top.Processes), "--dial") {
			served = id
		}
	}
	if served == "" {
		t.Fatal("the connection is not served by a pool container")
	}
	poll(t, 30*time.Second, "the pool to refill", func() bool { return e.b.PoolReady(tg) == 2 })
	up.Release(context.Background())
	if ids := e.containers(); len(ids) != 2 {
		t.Fatalf("after Release: %d containers, want the 2 of the pool", len(ids))
	}
	for _, id := range e.containers() {
		if id == served {
			t.Fatal("the used pool container was not removed")
		}
	}
}

func TestContainerRemovedMidSession(t *testing.T) {
	e := newEnv(t, nil)
	up := e.open(dockerTarget("gone", gate.DockerSpec{User: "65534"}), "alice")
	c := handshake(t, up)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("sleep 600"); err != nil {
		t.Fatal(err)
	}
	ids := e.containers()
	if err := api.ContainerRemove(context.Background(), ids[0], container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("session ended without error")
		}
		t.Logf("session ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("session still open 20s after its container was removed")
	}
	if err := c.Wait(); err == nil {
		t.Log("connection closed cleanly")
	}
	if why := up.Ended(context.Background()); why != "container for gone was removed" {
		t.Errorf("Ended = %q, want the removal named", why)
	}
	up.Release(context.Background())
	if !strings.Contains(e.logs.String(), "container was removed during the session") {
		t.Error("the log does not say the container was removed")
	}
	e.assertEmpty()
}

func TestOOMKill(t *testing.T) {
	e := newEnv(t, nil)
	up := e.open(dockerTarget("oom", gate.DockerSpec{User: "65534", Memory: 32 << 20}), "alice")
	c := handshake(t, up)
	out, err := run(t, c, "head -c 200000000 /dev/zero | tail")
	var ee *ssh.ExitError
	if !errors.As(err, &ee) {
		// The agent itself may be the OOM victim: the connection ends.
		t.Logf("memory hog: %v (output %d bytes)", err, len(out))
	} else {
		t.Logf("memory hog ended: %v", ee)
	}
	if err == nil {
		t.Fatal("a 200 MB allocation in a 32 MiB container succeeded")
	}
	if why := up.Ended(context.Background()); why != "container for oom ran out of memory" {
		t.Errorf("Ended = %q, want the OOM named", why)
	}
	up.Release(context.Background())
	if !strings.Contains(e.logs.String(), "container ran out of memory during the session") {
		t.Error("the log does not say the container ran out of memory")
	}
	e.assertEmpty()
}

func TestExecTransport(t *testing.T) {
	e := newEnv(t, func(c *docker.Config) { c.Transport = docker.TransportExec })
	if e.b.Transport() != docker.TransportExec {
		t.Fatal("transport not exec")
	}
	up := e.open(dockerTarget("ex", gate.DockerSpec{User: "65534:65534", Pids: 32}), "alice")
	c := handshake(t, up)
	checkConfinement(t, c, "65534")
	// stdin and EOF go through.
	s, _ := c.NewSession()
	s.Stdin = strings.NewReader("through stdin\n")
	out, err := s.Output("cat")
	if err != nil || string(out) != "through stdin\n" {
		t.Fatalf("cat: %q %v", out, err)
	}
	if out := mustRun(t, c, "ls /run/sshgate; stat -c %a /run/sshgate/host_key"); out != "authorized_keys\nhost_key\n400\n" {
		t.Errorf("files: %q", out)
	}
	// Per-user through exec as well.
	tg := dockerTarget("exu", gate.DockerSpec{User: "1000", Per: "user"})
	c1 := handshake(t, e.open(tg, "alice"))
	mustRun(t, c1, "echo x > /tmp/m")
	c2 := handshake(t, e.open(tg, "alice"))
	if out := mustRun(t, c2, "cat /tmp/m"); out != "x\n" {
		t.Errorf("per-user over exec not reused: %q", out)
	}
	up.Release(context.Background())
	if n := len(e.containers(docker.LabelTarget + "=ex")); n != 0 {
		t.Errorf("%d containers left for ex", n)
	}
}

// drain runs cmd and counts its stdout bytes.
func drain(t testing.TB, c *ssh.Client, cmd string) int64 {
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, _ := s.StdoutPipe()
	if err := s.Start(cmd); err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, r)
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMeasure prints figures (never asserts timings): go test -run Measure -v
// with SSHGATE_MEASURE=1.
func TestMeasure(t *testing.T) {
	if os.Getenv("SSHGATE_MEASURE") == "" {
		t.Skip("set SSHGATE_MEASURE=1 to print timings and throughput")
	}
	needDocker(t)
	first := func(e *env, tg gate.Target) time.Duration {
		start := time.Now()
		up := e.open(tg, "alice")
		c := handshake(t, up)
		mustRun(t, c, "echo hi")
		d := time.Since(start)
		c.Close()
		up.Release(context.Background())
		return d
	}
	const rounds = 5
	report := func(name string, f func() time.Duration) {
		var ds []time.Duration
		for range rounds {
			ds = append(ds, f())
		}
		t.Logf("%-34s %v", name, ds)
	}
	report("docker run --rm IMAGE echo hi", func() time.Duration {
		start := time.Now()
		if out, err := exec.Command("docker", "run", "--rm", "--network", "none", testImage, "echo", "hi").CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		return time.Since(start)
	})
	sock := newEnv(t, nil)
	report("socket cold: Open to first output", func() time.Duration {
		return first(sock, dockerTarget("cold", gate.DockerSpec{User: "65534"}))
	})
	pt := dockerTarget("pool", gate.DockerSpec{User: "65534", Pool: 1})
	sock.b.Prewarm(context.Background(), pt)
	report("socket pool: Open to first output", func() time.Duration {
		poll(t, 30*time.Second, "pool", func() bool { return sock.b.PoolReady(pt) == 1 })
		return first(sock, pt)
	})
	ut := dockerTarget("user", gate.DockerSpec{User: "65534", Per: "user"})
	first(sock, ut)
	report("socket per-user warm: to output", func() time.Duration { return first(sock, ut) })
	ex := newEnv(t, func(c *docker.Config) { c.Transport = docker.TransportExec })
	report("exec cold: Open to first output", func() time.Duration {
		return first(ex, dockerTarget("cold", gate.DockerSpec{User: "65534"}))
	})

	const size = 100 << 20
	for _, m := range []struct {
		name string
		e    *env
	}{{"socket", sock}, {"exec", ex}} {
		up := m.e.open(dockerTarget("tp", gate.DockerSpec{User: "65534"}), "alice")
		c := handshake(t, up)
		for range 2 {
			start := time.Now()
			n := drain(t, c, fmt.Sprintf("dd if=/dev/zero bs=1048576 count=%d 2>/dev/null", size>>20))
			d := time.Since(start)
			if n != size {
				t.Fatalf("%s: %d bytes", m.name, n)
			}
			t.Logf("%-6s transport: 100 MiB container->gate over SSH in %v = %.0f MB/s", m.name, d.Round(time.Millisecond), float64(n)/d.Seconds()/1e6)
		}
		up.Release(context.Background())
	}
}

func TestCmdRunsBesideAgent(t *testing.T) {
	e := newEnv(t, nil)
	tg := dockerTarget("svc", gate.DockerSpec{User: "1000", Cmd: []string{"sh", "-c", "echo started > /tmp/cmd-ran; exec sleep 1000"}})
	c := handshake(t, e.open(tg, "alice"))
	out := mustRun(t, c, "for i in $(seq 100); do [ -s /tmp/cmd-ran ] && break; sleep 0.05; done; cat /tmp/cmd-ran; ps -o user,args | grep -c '[s]leep 1000'")
	if out != "started\n1\n" {
		t.Fatalf("command beside the agent: %q", out)
	}
}

// tcpEngine serves the local engine's API on 127.0.0.1 (a stand-in for a
// remote engine: the gate then cannot share files with it) and returns a
// tcp:// host for DOCKER_HOST.
func tcpEngine(t *testing.T) string {
	t.Helper()
	sock := strings.TrimPrefix(api.DaemonHost(), "unix://")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				u, err := net.Dial("unix", sock)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{})
				go func() {
					io.Copy(u, c)
					u.(*net.UnixConn).CloseWrite()
					close(done)
				}()
				io.Copy(c, u)
				c.(*net.TCPConn).CloseWrite()
				<-done
			}()
		}
	}()
	return "tcp://" + l.Addr().String()
}

func TestRemoteEngineOverTCP(t *testing.T) {
	needDocker(t)
	t.Setenv("DOCKER_HOST", tcpEngine(t))
	e := newEnv(t, nil) // Transport auto: a tcp:// engine gets the exec transport
	if e.b.Transport() != docker.TransportExec {
		t.Fatalf("transport %q for a tcp:// engine", e.b.Transport())
	}
	up := e.open(dockerTarget("remote", gate.DockerSpec{User: "65534:65534"}), "alice")
	c := handshake(t, up)
	checkConfinement(t, c, "65534")
	s, _ := c.NewSession()
	s.Stdin = strings.NewReader("half-close\n")
	if out, err := s.Output("cat; echo after-eof"); err != nil || string(out) != "half-close\nafter-eof\n" {
		t.Fatalf("stdin/EOF over the exec stream: %q %v", out, err)
	}
	c.Close()
	up.Release(context.Background())
	e.assertEmpty()
}

func TestPerUserConcurrentOpensShareOneContainer(t *testing.T) {
	e := newEnv(t, nil)
	tg := dockerTarget("shared", gate.DockerSpec{User: "1000", Per: "user"})
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			up, err := e.b.Open(context.Background(), request(tg, "alice"))
			if err != nil {
				errs <- err
				return
			}
			defer up.Release(context.Background())
			c, chans, reqs, err := ssh.NewClientConn(up.Conn, "c", up.Client)
			if err != nil {
				errs <- err
				return
			}
			cl := ssh.NewClient(c, chans, reqs)
			defer cl.Close()
			s, err := cl.NewSession()
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			if out, err := s.Output("echo ok"); err != nil || string(out) != "ok\n" {
				errs <- fmt.Errorf("exec: %q %v", out, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ids := e.containers(); len(ids) != 1 {
		t.Fatalf("%d containers for one user, want 1: %v", len(ids), ids)
	}
}

func TestPing(t *testing.T) {
	e := newEnv(t, nil)
	engine, apiVersion, err := e.b.Ping(context.Background())
	if err != nil || engine == "" || apiVersion == "" {
		t.Fatalf("Ping = %q %q %v", engine, apiVersion, err)
	}
	t.Logf("engine %s, API %s, transport %s, gate %s", engine, apiVersion, e.b.Transport(), e.b.GateID())
}

func TestOpenCanceledLeavesNothing(t *testing.T) {
	e := newEnv(t, nil)
	tg := dockerTarget("cancel", gate.DockerSpec{User: "1000"})
	for _, d := range []time.Duration{5 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		up, err := e.b.Open(ctx, request(tg, "alice"))
		cancel()
		if err == nil {
			up.Release(context.Background()) // the machine was quicker than d
			continue
		}
		var pe *gate.PublicError
		if !errors.As(err, &pe) {
			t.Errorf("after %s: %v is not a PublicError", d, err)
		}
	}
	e.assertEmpty()
}

// Benchmarks (go test -run '^$' -bench . ./internal/target/docker): Open to
// the first output of a command, and bulk throughput container->gate.

func benchFirstOutput(b *testing.B, mod func(*docker.Config), spec gate.DockerSpec) {
	e := newEnv(b, func(c *docker.Config) {
		c.Logger = slog.New(slog.DiscardHandler)
		if mod != nil {
			mod(c)
		}
	})
	tg := dockerTarget("bench", spec)
	if spec.Pool > 0 {
		e.b.Prewarm(context.Background(), tg)
	}
	if spec.Per == "user" {
		up := e.open(tg, "alice")
		up.Release(context.Background())
	}
	b.ResetTimer()
	for b.Loop() {
		if spec.Pool > 0 {
			b.StopTimer()
			poll(b, 60*time.Second, "pool", func() bool { return e.b.PoolReady(tg) == spec.Pool })
			b.StartTimer()
		}
		up, err := e.b.Open(context.Background(), request(tg, "alice"))
		if err != nil {
			b.Fatal(err)
		}
		c, chans, reqs, err := ssh.NewClientConn(up.Conn, "c", up.Client)
		if err != nil {
			b.Fatal(err)
		}
		cl := ssh.NewClient(c, chans, reqs)
		if out := mustRun(b, cl, "echo hi"); out != "hi\n" {
			b.Fatalf("output %q", out)
		}
		b.StopTimer()
		cl.Close()
		up.Release(context.Background())
		b.StartTimer()
	}
}

func BenchmarkFirstOutputSocketCold(b *testing.B) {
	benchFirstOutput(b, nil, gate.DockerSpec{User: "65534"})
}

func BenchmarkFirstOutputSocketPool(b *testing.B) {
	benchFirstOutput(b, nil, gate.DockerSpec{User: "65534", Pool: 1})
}

func BenchmarkFirstOutputSocketPerUser(b *testing.B) {
	benchFirstOutput(b, nil, gate.DockerSpec{User: "65534", Per: "user"})
}

func BenchmarkFirstOutputExecCold(b *testing.B) {
	benchFirstOutput(b, func(c *docker.Config) { c.Transport = docker.TransportExec }, gate.DockerSpec{User: "65534"})
}

func benchThroughput(b *testing.B, transport string) {
	e := newEnv(b, func(c *docker.Config) { c.Transport = transport; c.Logger = slog.New(slog.DiscardHandler) })
	up := e.open(dockerTarget("tp", gate.DockerSpec{User: "65534"}), "alice")
	c := handshake(b, up)
	const mib = 100
	b.SetBytes(mib << 20)
	b.ResetTimer()
	for b.Loop() {
		if n := drain(b, c, fmt.Sprintf("dd if=/dev/zero bs=1048576 count=%d 2>/dev/null", mib)); n != mib<<20 {
			b.Fatalf("%d bytes", n)
		}
	}
}

func BenchmarkThroughputSocket(b *testing.B) { benchThroughput(b, docker.TransportSocket) }
func BenchmarkThroughputExec(b *testing.B)   { benchThroughput(b, docker.TransportExec) }
