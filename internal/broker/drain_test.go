package broker

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

type stderrChannel struct {
	ssh.Channel
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *stderrChannel) Stderr() io.ReadWriter { return c }
func (c *stderrChannel) Read([]byte) (int, error) {
	return 0, io.EOF
}
func (c *stderrChannel) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}
func (c *stderrChannel) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func TestDrainTellsPTYSessions(t *testing.T) {
	b := &Broker{}
	a, gone := &stderrChannel{}, &stderrChannel{}
	defer b.drain.addPTY(a)()
	b.drain.addPTY(gone)() // ended before the drain
	if n := b.Drain(30 * time.Second); n != 1 {
		t.Fatalf("told %d sessions, want 1", n)
	}
	const want = "sshgate: this gate is restarting; your session will end in 30s\r\n"
	if a.String() != want || gone.String() != "" {
		t.Fatalf("live %q, ended %q", a, gone)
	}
	late := &stderrChannel{}
	defer b.drain.addPTY(late)() // a PTY session that starts during the drain
	if late.String() != want {
		t.Fatalf("late session got %q", late)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "now", 30 * time.Second: "30s", 2 * time.Minute: "2m",
		90 * time.Second: "1m30s", 1499 * time.Millisecond: "1s"} {
		if got := humanDuration(d); got != want {
			t.Errorf("%s: %q, want %q", d, got, want)
		}
	}
}
