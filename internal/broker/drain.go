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
// PTY session that starts during it). Sessions without a PTY get nothing:
// their stdout and stderr belong to the programs at both ends.
type drainer struct {
	mu   sync.Mutex
	ptys map[ssh.Channel]struct{}
	msg  string // set when the drain begins
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
