package docker_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target/docker"
)

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

func TestPing(t *testing.T) {
	e := newEnv(t, nil)
	engine, apiVersion, err := e.b.Ping(context.Background())
	if err != nil || engine == "" || apiVersion == "" {
		t.Fatalf("Ping = %q %q %v", engine, apiVersion, err)
	}
	t.Logf("engine %s, API %s, transport %s, gate %s", engine, apiVersion, e.b.Transport(), e.b.GateID())
}
