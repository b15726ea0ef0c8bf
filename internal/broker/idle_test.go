package broker

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/coalesce"
	"github.com/sshgate/sshgate/internal/target"
)

// maxIdleGoroutines is what one idle relayed session (one connection, one
// exec session running, no data moving) may cost the gate in goroutines.
// Of them, six are x/crypto's own: per connection (the user's and the
// target's) its transport reader, its key-exchange loop and its mux loop.
// The gate's: the connection's loop (Handle: the user's channels and
// requests, what the target opens, and the session's requests and the end
// of its output, relay.Run), and the readers of the target's stdout and
// stderr (the test's client sends EOF at once, so no reader of the user's
// stdin is left).
const maxIdleGoroutines = 9

// goroutinesSettled returns the goroutine count once it stops changing.
func goroutinesSettled() int {
	n := runtime.NumGoroutine()
	for i := 0; i < 50; i++ {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return m
		}
		n = m
	}
	return n
}

func startSleep(t *testing.T, c *ssh.Client) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("sleep"); err != nil {
		t.Fatal(err)
	}
}

// What the gate holds per idle relayed session: the goroutines of n idle
// sessions through the broker less those of n sessions straight to the same
// target (the client's and the target's own, present in both).
func TestIdleSessionGoroutines(t *testing.T) {
	const n = 20
	f := startBroker(t, nil)

	base := goroutinesSettled()
	var direct []*ssh.Client
	for i := 0; i < n; i++ {
		u, err := f.tgt.Open(t.Context(), target.Request{Login: "www"})
		if err != nil {
			t.Fatal(err)
		}
		cc, chans, reqs, err := ssh.NewClientConn(coalesce.New(u.Conn), "pipe", u.Client)
		if err != nil {
			t.Fatal(err)
		}
		c := ssh.NewClient(cc, chans, reqs)
		direct = append(direct, c)
		startSleep(t, c)
	}
	directCost := goroutinesSettled() - base
	for _, c := range direct {
		_ = c.Close()
	}

	base = goroutinesSettled()
	var relayed []*ssh.Client
	for i := 0; i < n; i++ {
		c := f.dial(t, "alice+web-1")
		relayed = append(relayed, c)
		startSleep(t, c)
	}
	gateCost := goroutinesSettled() - base - directCost
	per := float64(gateCost) / n
	t.Logf("gate goroutines per idle relayed session: %.1f (x/crypto's own: 6)", per)
	if per > maxIdleGoroutines {
		buf := make([]byte, 1<<20)
		t.Fatalf("%.1f goroutines per idle session, want at most %d\n%s", per, maxIdleGoroutines, buf[:runtime.Stack(buf, true)])
	}
	for _, c := range relayed {
		_ = c.Close()
	}
}
