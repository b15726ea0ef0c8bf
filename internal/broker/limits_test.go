package broker

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/relay"
)

func TestLimits(t *testing.T) {
	type got struct {
		mu    sync.Mutex
		warns []string
	}
	run := func(max, idle time.Duration, feed func(l *limits, cut <-chan struct{})) (*got, string, string) {
		g := &got{}
		cut := make(chan struct{})
		var once sync.Once
		l := startLimits(max, idle, func(m string) { g.mu.Lock(); g.warns = append(g.warns, m); g.mu.Unlock() },
			func() { once.Do(func() { close(cut) }) })
		if feed != nil {
			feed(l, cut)
		}
		select {
		case <-cut:
		case <-time.After(30 * time.Second):
			t.Fatal("the limit never ended the session")
		}
		l.close()
		r, m := l.ended()
		return g, r, m
	}
	if startLimits(0, 0, nil, nil) != nil {
		t.Fatal("limits without limits")
	}
	g, reason, msg := run(200*time.Millisecond, 0, nil)
	if reason != "max_session" || !strings.Contains(msg, "at most 200ms") || len(g.warns) != 0 {
		t.Errorf("max session: %q %q warns %v", reason, msg, g.warns)
	}
	g, reason, msg = run(0, 400*time.Millisecond, nil)
	if reason != "idle_timeout" || msg != "session ended: no input for 400ms" || len(g.warns) != 1 || !strings.Contains(g.warns[0], "this session ends in") {
		t.Errorf("idle: %q %q warns %v", reason, msg, g.warns)
	}
	// Input keeps an idle session alive: 1.2s of input every 50ms against
	// a 400ms timeout, then silence.
	start := time.Now()
	_, reason, _ = run(0, 400*time.Millisecond, func(l *limits, cut <-chan struct{}) {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for time.Since(start) < 1200*time.Millisecond {
			select {
			case <-cut:
				t.Error("ended while the user typed")
				return
			case <-tick.C:
				l.Data(relay.ToTarget, []byte("x"))
				l.Data(relay.ToUser, []byte("output is not input"))
			}
		}
	})
	if reason != "idle_timeout" || time.Since(start) < 1200*time.Millisecond {
		t.Errorf("idle with input: %q after %s", reason, time.Since(start))
	}
}
