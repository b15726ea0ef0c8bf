package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target/docker"
)

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
