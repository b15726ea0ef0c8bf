package docker_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target/docker"
)

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
