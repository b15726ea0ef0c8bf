package broker

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/account"
)

// drainer tells the users in PTY sessions that the gate is draining: one
// line on stderr of each, once, when the drain begins (and at once to a
// PTY session that starts during it); sessions without a PTY get nothing
// then (their stdout and stderr belong to the programs at both ends). At
// the deadline every relayed session still running, PTY or not, is ended
// with one line on stderr and exit status 255, as a grant's limit ends one.
type drainer struct {
	mu       sync.Mutex
	ptys     map[ssh.Channel]struct{}
	sessions map[*observed]struct{} // every relayed session, ended at the deadline
	msg      string                 // set when the drain begins
}

// DrainEndMessage is the line every session still running at the end of the
// drain gets before it is ended (exit status 255).
const DrainEndMessage = "this gate is restarting; session ended"

// addSession registers a relayed session to end at the drain's deadline;
// the func it returns removes it.
func (d *drainer) addSession(o *observed) func() {
	d.mu.Lock()
	if d.sessions == nil {
		d.sessions = map[*observed]struct{}{}
	}
	d.sessions[o] = struct{}{}
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		delete(d.sessions, o)
		d.mu.Unlock()
	}
}

// EndSessions ends every relayed session still running: msg on stderr,
// exit status 255, the channels closed. It returns how many it ended, after
// at most wait (a client that reads nothing may hold a write; closing its
// connection frees it).
func (b *Broker) EndSessions(msg string, wait time.Duration) int {
	b.drain.mu.Lock()
	live := make([]*observed, 0, len(b.drain.sessions))
	for o := range b.drain.sessions {
		live = append(live, o)
	}
	b.drain.mu.Unlock()
	done := make(chan struct{}, len(live))
	for _, o := range live {
		go func() { o.stop(msg, 255, false); done <- struct{}{} }()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for range live {
		select {
		case <-done:
		case <-t.C:
			return len(live)
		}
	}
	return len(live)
}

// addPTY registers a PTY session's channel; the func it returns removes it.
func (d *drainer) addPTY(ch ssh.Channel) func() {
	d.mu.Lock()
	if d.ptys == nil {
		d.ptys = map[ssh.Channel]struct{}{}
	}
	d.ptys[ch] = struct{}{}
	msg := d.msg
	d.mu.Unlock()
	if msg != "" {
		account.Message(ch, true, msg)
	}
	return func() {
		d.mu.Lock()
		delete(d.ptys, ch)
		d.mu.Unlock()
	}
}

// Drain tells every user in a PTY session that this gate is restarting and
// that the session ends within grace; it returns how many were told. The
// caller has stopped accepting first (sshd.Server.StopAccepting) and ends
// the sessions at the deadline (sshd.Server.Shutdown).
func (b *Broker) Drain(grace time.Duration) int {
	msg := "this gate is restarting; your session will end in " + humanDuration(grace)
	b.drain.mu.Lock()
	b.drain.msg = msg
	chs := make([]ssh.Channel, 0, len(b.drain.ptys))
	for ch := range b.drain.ptys {
		chs = append(chs, ch)
	}
	b.drain.mu.Unlock()
	// Outside the lock: a write may wait for a full channel window.
	var wg sync.WaitGroup
	for _, ch := range chs {
		wg.Add(1)
		go func() { defer wg.Done(); account.Message(ch, true, msg) }()
	}
	wg.Wait()
	return len(chs)
}

// humanDuration is d as people write it: "30s", "2m", "1m30s", "now".
func humanDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d <= 0:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	default:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	}
}
