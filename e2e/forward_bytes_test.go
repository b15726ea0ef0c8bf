package e2e_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// askServer answers each connection's 7-byte question with 1000 bytes: the
// two directions of a forward carry different amounts.
func askServer(t *testing.T) int {
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
			go func() {
				defer c.Close()
				q := make([]byte, 7)
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				c.Write(bytes.Repeat([]byte("a"), 1000))
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// ask sends the question to port and reads the whole answer.
func ask(t *testing.T, port int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(short))
	c.Write([]byte("7 bytes"))
	got, err := io.ReadAll(c)
	if err != nil || len(got) != 1000 {
		t.Fatalf("answer: %d bytes (%v)", len(got), err)
	}
}

// The audit's bytes_in is what the user's side sent toward the target and
// bytes_out what came back, for local (-L) and remote (-R) forwards alike:
// under -R the connection starts at the target, the user's side answers.
func TestForwardBytesAudited(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{forwarding: true})
	log := &auditLog{path: filepath.Join(w.gate.DataDir, "audit", "audit.jsonl")}
	server := askServer(t)

	// -L: the user asks (7 bytes in), the target's side answers (1000 out).
	lport, cmd, _ := startForward(t, w.alice, server)
	ask(t, lport)
	// -R: the target's side asks (7 bytes out), the user's side answers (1000 in).
	rport := harness.FreePort(t)
	startRemoteForward(t, w.alice, "-R", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", rport, server))
	ask(t, rport)

	want := map[string][2]float64{"direct-tcpip": {7, 1000}, "forwarded-tcpip": {1000, 7}}
	got := map[string][2]float64{}
	ok := harness.Eventually(short, func() bool {
		evs, _ := log.read(t)
		for _, e := range evs {
			in, _ := e["bytes_in"].(float64)
			out, _ := e["bytes_out"].(float64)
			if e["type"] == "forward" && in+out > 0 { // not a readiness probe
				got[fmt.Sprint(e["channel"])] = [2]float64{in, out}
			}
		}
		return len(got) == len(want)
	})
	cmd.Process.Kill()
	if !ok {
		t.Fatalf("forward events with bytes: %v, want %v", got, want)
	}
	for ch, w := range want {
		if got[ch] != w {
			t.Errorf("%s: bytes_in, bytes_out = %v, want %v", ch, got[ch], w)
		}
	}
}
