package account

import (
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Watch is a live session being watched (`ssh -t USER@GATE watch ID`).
type Watch interface {
	// Header is the line the watcher reads first.
	Header() string
	// Next waits for the session's output. end is set, with the rest of
	// the output, when the watch is over; closing done leaves it.
	Next(done <-chan struct{}) (data []byte, end *WatchEnd)
	// Stop leaves the watch (idempotent).
	Stop()
}

// WatchEnd is how a watch ended: the watcher's last line ("" none) and
// exit status.
type WatchEnd struct {
	Line   string
	Status uint32
}

const watchUsage = "usage: ssh -t USER@GATE watch SESSION_ID (16 hex digits, as `sshgate sessions` lists them)"

// isWatch reports whether a gate command is `watch ...`.
func isWatch(command string) bool {
	f := strings.Fields(command)
	return len(f) > 0 && f[0] == "watch"
}

// watch streams a live session's output to the watcher, read only: on a
// PTY the watcher's keys are ignored except q and Ctrl-C (and Ctrl-D),
// which leave; otherwise the watch runs until the session ends or the
// watcher's connection closes (an EOF on stdin does not end it).
func (c *Conn) watch(ch ssh.Channel, reqs <-chan *ssh.Request, s *Setup, command string) {
	args := strings.Fields(command)[1:]
	if len(args) != 1 {
		c.fail(ch, s, watchUsage, 2)
		return
	}
	if c.Watch == nil {
		c.fail(ch, s, "watching sessions is off on this gate", 1)
		return
	}
	w, err := c.Watch(args[0])
	if err != nil {
		c.fail(ch, s, publicText(err), 1)
		return
	}
	defer w.Stop()
	if s.Start.WantReply {
		_ = s.Start.Reply(true, nil)
	}
	go discard(reqs)
	c.message(ch, s, w.Header())
	done := make(chan struct{})
	var once sync.Once
	leave := func() { once.Do(func() { close(done) }) }
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-c.Ctx.Done(): // the watcher's connection ended
			leave()
		case <-stop:
		}
	}()
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := ch.Read(buf)
			if s.PTY != nil && strings.ContainsAny(string(buf[:n]), "qQ\x03\x04") {
				leave()
				return
			}
			if err != nil { // EOF: no more keys (stdin closed); the watch goes on
				return
			}
		}
	}()
	status := uint32(0)
	for {
		data, end := w.Next(done)
		if len(data) > 0 {
			if _, err := ch.Write(data); err != nil {
				return
			}
		}
		if end != nil {
			if end.Line != "" {
				c.message(ch, s, end.Line)
			}
			status = end.Status
			break
		}
	}
	c.exit(ch, status)
}
