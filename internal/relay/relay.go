// Package relay joins two SSH channels: a user's channel on the gate and the
// matching channel on a target. Data, extended data (stderr), EOF and channel
// requests pass through in order; exit-status and exit-signal are delivered
// after the last byte of output and before the close, as sshd does. It
// imports only x/crypto/ssh: no store, policy or target.
package relay

import (
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// Filter decides whether a request from the user may pass to the target.
// It returns false to refuse the request (answered false to the user).
type Filter func(req *ssh.Request) bool

// Counters hold the bytes moved in each direction. Safe to read while the
// relay runs.
type Counters struct {
	In  atomic.Int64 // user -> target
	Out atomic.Int64 // target -> user (stdout and stderr)
}

// Result is what a finished relay reports.
type Result struct {
	ExitStatus *uint32 // nil if the target sent none
	ExitSignal string  // signal name, if the target sent exit-signal
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func copyCounted(dst io.Writer, src io.Reader, n *atomic.Int64) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n.Add(int64(nw))
			if werr != nil {
				return
			}
		}
		if rerr != nil {
			return
		}
	}
}

// Channels relays down (the user's accepted channel) and up (the target's
// channel) until both are done, then closes both. downReqs and upReqs are
// the channels' request streams (never nil: x/crypto always provides them).
// filter may be nil
// (everything passes). It returns when the relay is over.
//
// beforeClose, if not nil, runs after the target's output and exit status
// have reached the user and before the user's channel is closed, so the
// caller may add a last message.
func Channels(down ssh.Channel, downReqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request, filter Filter, c *Counters, beforeClose ...func(Result)) Result {
	if c == nil {
		c = &Counters{}
	}
	var res Result
	var wg sync.WaitGroup

	// user -> target, then EOF.
	go func() {
		copyCounted(up, down, &c.In)
		_ = up.CloseWrite()
	}()

	// target -> user: stdout and stderr, then EOF once both are drained.
	outDone := make(chan struct{})
	wg.Add(2)
	go func() { defer wg.Done(); copyCounted(down, up, &c.Out) }()
	go func() { defer wg.Done(); copyCounted(down.Stderr(), up.Stderr(), &c.Out) }()
	go func() {
		wg.Wait()
		_ = down.CloseWrite()
		close(outDone)
	}()

	// user requests -> target. When the user's channel closes, close the target's.
	downDone := make(chan struct{})
	go func() {
		defer close(downDone)
		for req := range downReqs {
			if filter != nil && !filter(req) {
				if req.WantReply {
					_ = req.Reply(false, nil)
				}
				continue
			}
			ok, err := up.SendRequest(req.Type, req.WantReply, req.Payload)
			if req.WantReply {
				_ = req.Reply(ok && err == nil, nil)
			}
		}
		_ = up.Close()
	}()

	// target requests -> user. Exit status waits for the output to drain.
	var deferred []*ssh.Request
	for req := range upReqs {
		switch req.Type {
		case "exit-status", "exit-signal":
			deferred = append(deferred, req)
			if req.Type == "exit-status" && len(req.Payload) == 4 {
				s := uint32(req.Payload[0])<<24 | uint32(req.Payload[1])<<16 | uint32(req.Payload[2])<<8 | uint32(req.Payload[3])
				res.ExitStatus = &s
			}
			if req.Type == "exit-signal" {
				var sig struct {
					Signal     string
					CoreDumped bool
					Msg, Lang  string
				}
				if ssh.Unmarshal(req.Payload, &sig) == nil {
					res.ExitSignal = sig.Signal
				}
			}
			continue
		}
		ok, err := down.SendRequest(req.Type, req.WantReply, req.Payload)
		if req.WantReply {
			_ = req.Reply(ok && err == nil, nil)
		}
	}
	// The target closed its channel: all its output is buffered on our side.
	<-outDone
	for _, req := range deferred {
		_, _ = down.SendRequest(req.Type, false, req.Payload)
	}
	for _, f := range beforeClose {
		f(res)
	}
	_ = down.Close()
	_ = up.Close()
	<-downDone
	return res
}
