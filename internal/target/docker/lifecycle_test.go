package docker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target/docker"
)

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
	// one serving, its keeper agent (PID 1) the parent of the command.
	// (The pool's containers share a host name; the cgroup path names the
	// container.)
	who := mustRun(t, c, "cat /proc/self/cgroup; echo ppid=$PPID")
	served := ""
	for _, id := range pooled {
		if strings.Contains(who, id) && strings.HasSuffix(who, "\nppid=1\n") {
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
