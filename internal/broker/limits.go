package broker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sshgate/sshgate/internal/relay"
)

// limits ends a session at the grant's maximum session time, or after the
// grant's idle timeout without input from the user (data toward the
// target), with a one-line warning first: a minute before, or halfway for
// timeouts under two minutes.
type limits struct {
	max, idle time.Duration
	last      atomic.Int64 // unix nanoseconds of the user's last input
	reason    atomic.Pointer[[2]string]
	stop      chan struct{}
	wg        sync.WaitGroup
}

// startLimits runs the session's limits until stop; nil when it has none.
// warn writes a line to the user; cut ends the session.
func startLimits(max, idle time.Duration, warn func(string), cut func()) *limits {
	if max <= 0 && idle <= 0 {
		return nil
	}
	l := &limits{max: max, idle: idle, stop: make(chan struct{})}
	l.last.Store(time.Now().UnixNano())
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.run(warn, cut)
	}()
	return l
}

// Data marks the user's input (relay.Tap).
func (l *limits) Data(s relay.Stream, _ []byte) {
	if s == relay.ToTarget {
		l.last.Store(time.Now().UnixNano())
	}
}

func (l *limits) warnBefore() time.Duration {
	if l.idle < 2*time.Minute {
		return l.idle / 2
	}
	return time.Minute
}

func (l *limits) run(warn func(string), cut func()) {
	start := time.Now()
	warned := false
	for {
		now := time.Now()
		next := time.Duration(1 << 62)
		if l.max > 0 {
			left := l.max - now.Sub(start)
			if left <= 0 {
				l.end("max_session", fmt.Sprintf("session ended: this grant allows sessions of at most %s", l.max), cut)
				return
			}
			next = left
		}
		if l.idle > 0 {
			idleFor := now.Sub(time.Unix(0, l.last.Load()))
			left := l.idle - idleFor
			switch w := l.warnBefore(); {
			case left <= 0:
				l.end("idle_timeout", fmt.Sprintf("session ended: no input for %s", l.idle), cut)
				return
			case left > w:
				warned = false
				next = min(next, left-w)
			default:
				if !warned {
					warn(fmt.Sprintf("no input for %s: this session ends in %s without input", idleFor.Round(time.Second), left.Round(time.Second)))
					warned = true
				}
				next = min(next, left)
			}
		}
		t := time.NewTimer(next)
		select {
		case <-t.C:
		case <-l.stop:
			t.Stop()
			return
		}
	}
}

func (l *limits) end(reason, msg string, cut func()) {
	l.reason.Store(&[2]string{reason, msg})
	cut()
}

// ended returns the audit reason and the user's line when a limit ended
// the session ("" otherwise). Safe on nil.
func (l *limits) ended() (reason, msg string) {
	if l == nil {
		return "", ""
	}
	if r := l.reason.Load(); r != nil {
		return r[0], r[1]
	}
	return "", ""
}

// close stops the limits and waits for them. Safe on nil.
func (l *limits) close() {
	if l == nil {
		return
	}
	close(l.stop)
	l.wg.Wait()
}
