package e2e_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// echoServer is a TCP echo listener on 127.0.0.1, the forwarding target.
func echoServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// startForward runs `ssh -N -L LPORT:127.0.0.1:EPORT` and returns the local
// port once ssh listens on it.
func startForward(t *testing.T, c *harness.Client, echoPort int) (int, *exec.Cmd, *harness.Buffer) {
	t.Helper()
	var err error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken meanwhile
		var lport int
		var cmd *exec.Cmd
		var stderr *harness.Buffer
		if lport, cmd, stderr, err = tryForward(t, c, echoPort); err == nil {
			return lport, cmd, stderr
		}
	}
	t.Fatal(err)
	return 0, nil, nil
}

func tryForward(t *testing.T, c *harness.Client, echoPort int) (int, *exec.Cmd, *harness.Buffer, error) {
	t.Helper()
	lport := harness.FreePort(t)
	stderr := &harness.Buffer{}
	cmd := c.SSHTo("web-1", []string{"-N", "-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", lport, echoPort)})
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("ssh -L stderr: %s", stderr.String())
		}
	})
	alive := func() bool {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	if err := harness.WaitListening("127.0.0.1:"+strconv.Itoa(lport), short, alive); err != nil {
		return 0, nil, nil, fmt.Errorf("ssh -L: %v; stderr %q", err, stderr.String())
	}
	return lport, cmd, stderr, nil
}

func TestForwardAllowed(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{forwarding: true})
	lport, _, _ := startForward(t, w.alice, echoServer(t))

	payload := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{5}).Read(payload)
	echoThrough(t, lport, payload, 3) // several connections through one forward
}

// echoThrough sends payload through n connections, one after the other, to
// the forwarded local port lport of an echo server, and fails the test
// unless each echoes it back whole.
func echoThrough(t *testing.T, lport int, payload []byte, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(lport), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(short))
		go func() { c.Write(payload); c.(*net.TCPConn).CloseWrite() }()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("connection %d: echoed %d of %d bytes (%v)", i, len(got), len(payload), err)
		}
	}
}

func TestForwardRefusedWithoutGrant(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	lport, _, stderr := startForward(t, w.alice, echoServer(t))

	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(lport), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(short))
	c.Write([]byte("ping\n"))
	got, _ := io.ReadAll(c)
	if len(got) != 0 {
		t.Errorf("a refused forward echoed %q", got)
	}
	const want = "administratively prohibited: port forwarding is not permitted"
	if !stderr.WaitFor(want, short) {
		t.Errorf("ssh stderr %q, want it to contain %q", stderr.String(), want)
	}
	if !strings.Contains(stderr.String(), "open failed") {
		t.Errorf("ssh stderr %q: no `open failed`", stderr.String())
	}
	// The session itself still works: exec on the same grant.
	r := harness.MustRun(t, w.alice.SSHTo("web-1", nil, "echo ok"), nil, short)
	if r.Stdout != "ok\n" {
		t.Errorf("exec after a refused forward: %q", r.Stdout)
	}
}

// Remote forwarding (ssh -R) through the gate: the target's sshd listens,
// its connections come back as forwarded-tcpip channels through the gate to
// the client, which connects them to the echo server. Two -R at once: their
// global requests are answered in order.
func TestRemoteForwardAllowed(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{forwarding: true})
	echo := echoServer(t)
	r1, r2 := harness.FreePort(t), harness.FreePort(t)
	startRemoteForward(t, w.alice,
		"-R", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", r1, echo),
		"-R", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", r2, echo))
	payload := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{7}).Read(payload)
	for _, port := range []int{r1, r2} {
		echoThrough(t, port, payload, 2)
	}
}

// startRemoteForward runs `ssh -N -o ExitOnForwardFailure=yes ARGS` to
// web-1 (ARGS being -R options) and returns once every remote port it names
// listens on the target, which here is this host.
func startRemoteForward(t *testing.T, c *harness.Client, args ...string) {
	t.Helper()
	stderr := &harness.Buffer{}
	cmd := c.SSHTo("web-1", append([]string{"-N", "-o", "ExitOnForwardFailure=yes"}, args...))
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("ssh -R stderr: %s", stderr.String())
		}
	})
	alive := func() bool {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "-R" {
			continue
		}
		port := strings.Split(args[i+1], ":")[1] // 127.0.0.1:PORT:HOST:PORT
		if err := harness.WaitListening("127.0.0.1:"+port, short, alive); err != nil {
			t.Fatalf("ssh -R %s: %v; stderr %q", port, err, stderr.String())
		}
	}
}
