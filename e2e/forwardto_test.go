package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// Forwarding reach (grant --forward-to): the gate refuses a local forward
// to a destination the grant does not list before the target hears of it,
// with an SSH open failure naming the destination, and audits every
// attempt.

// localForward runs `ssh -N -L 127.0.0.1:LPORT:REMOTE...` to target, one
// -L per remote (HOST:PORT or /SOCKET), and returns the local ports once
// ssh listens on them. Each readiness probe is a forward attempt.
func localForward(t *testing.T, c *harness.Client, target string, remotes ...string) ([]int, *harness.Buffer) {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port may be taken meanwhile
		var ports []int
		flags := []string{"-N", "-o", "ExitOnForwardFailure=yes"}
		for _, r := range remotes {
			p := harness.FreePort(t)
			ports = append(ports, p)
			flags = append(flags, "-L", fmt.Sprintf("127.0.0.1:%d:%s", p, r))
		}
		stderr := &harness.Buffer{}
		cmd := c.SSHTo(target, flags)
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
				t.Logf("ssh -L %s stderr: %s", target, stderr.String())
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
		lastErr = nil
		for _, p := range ports {
			if lastErr = harness.WaitListening("127.0.0.1:"+strconv.Itoa(p), short, alive); lastErr != nil {
				break
			}
		}
		if lastErr == nil {
			return ports, stderr
		}
		cmd.Process.Kill()
	}
	t.Fatalf("ssh -L: %v", lastErr)
	return nil, nil
}

// readThrough connects to the forwarded local port lport, sends a line and
// returns what comes back before the forward closes.
func readThrough(t *testing.T, lport int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(lport), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(short))
	c.Write([]byte("ping\n"))
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	return string(got)
}

// forwardEvents are the forward events in the gate's audit log for target.
func forwardEvents(t *testing.T, g *harness.Gate, target string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(g.DataDir, "audit", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(string(data), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) == nil && e["type"] == "forward" && e["target"] == target {
			out = append(out, e)
		}
	}
	return out
}

// waitForwardEvent polls the audit log for a forward event to target and
// dest with result (and reason when not "").
func waitForwardEvent(t *testing.T, g *harness.Gate, target, dest, result, reason string) {
	t.Helper()
	var evs []map[string]any
	if !harness.Eventually(short, func() bool {
		evs = forwardEvents(t, g, target)
		for _, e := range evs {
			if e["destination"] == dest && e["result"] == result && (reason == "" || e["reason"] == reason) {
				return true
			}
		}
		return false
	}) {
		t.Errorf("no forward event %s %s %s %s in the audit; forward events of %s: %v", target, dest, result, reason, target, evs)
	}
}

// countingEcho is an echo listener that counts its connections.
type countingEcho struct {
	port  int
	conns chan struct{}
}

func startCountingEcho(t *testing.T) *countingEcho {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	e := &countingEcho{port: l.Addr().(*net.TCPAddr).Port, conns: make(chan struct{}, 1000)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case e.conns <- struct{}{}:
			default:
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return e
}

// A grant's --forward-to reaches what it lists, with real OpenSSH ssh -L
// and sshd: another port on the same host, or the same host by a name not
// listed, is refused by the gate (the sshd never connects) and audited.
func TestForwardToAllowlist(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	allowed, other := startCountingEcho(t), startCountingEcho(t)
	w := newWorld(t, worldOptions{forwarding: true, forwardTo: []string{"127.0.0.1:" + strconv.Itoa(allowed.port)}})
	ap, op := strconv.Itoa(allowed.port), strconv.Itoa(other.port)
	ports, stderr := localForward(t, w.alice, "web-1", "127.0.0.1:"+ap, "127.0.0.1:"+op, "localhost:"+ap)

	echoThrough(t, ports[0], []byte("through the allowlist\n"), 2)
	for _, p := range ports[1:] {
		if got := readThrough(t, p); got != "" {
			t.Errorf("a forward outside the allowlist echoed %q", got)
		}
	}
	for _, want := range []string{
		"administratively prohibited: forwarding to 127.0.0.1:" + op + " is not permitted for target web-1",
		"administratively prohibited: forwarding to localhost:" + ap + " is not permitted for target web-1",
	} {
		if !stderr.WaitFor(want, short) {
			t.Errorf("ssh stderr %q, want it to contain %q", stderr.String(), want)
		}
	}
	if n := len(other.conns); n != 0 {
		t.Errorf("the port outside the allowlist got %d connections", n)
	}
	waitForwardEvent(t, w.gate, "web-1", "127.0.0.1:"+ap, "ok", "")
	waitForwardEvent(t, w.gate, "web-1", "127.0.0.1:"+op, "denied", "destination_not_allowed")
	waitForwardEvent(t, w.gate, "web-1", "localhost:"+ap, "denied", "destination_not_allowed")
	// The session itself still works.
	if r := harness.MustRun(t, w.alice.SSHTo("web-1", nil, "echo ok"), nil, short); r.Stdout != "ok\n" {
		t.Errorf("exec after refused forwards: %q", r.Stdout)
	}
}
