package docker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

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
