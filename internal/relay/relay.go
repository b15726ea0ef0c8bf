// Package relay joins two SSH channels: a user's channel on the gate and the
// matching channel on a target. Data, extended data (stderr), EOF and channel
// requests pass through in order; exit-status and exit-signal are delivered
// after the last byte of output and before the close, as sshd does. It
// imports only x/crypto/ssh: no store, policy or target.
//
// Must not import: store/... policy target/... auth/... sshd/... broker audit/... live app
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
// relay runs. Tap, if set before the relay starts, sees the data too.
type Counters struct {
	In  atomic.Int64 // user -> target
	Out atomic.Int64 // target -> user (stdout and stderr)
	Tap Tap
}

// Stream names one direction of a relayed channel's data.
type Stream uint8

const (
	ToTarget     Stream = iota // user -> target (a session's stdin)
	ToUser                     // target -> user (stdout)
	ToUserStderr               // target -> user, extended data 1 (stderr)
)

// Tap sees a copy of the data a relay moves, just before it is written on
// (so a reply never reaches a tap before its request), for audit parsers and
// session recorders. Data is called from the copying
// goroutines: in order within a stream, concurrently across streams. It must
// not block and must not keep p after it returns.
type Tap interface {
	Data(s Stream, p []byte)
}

// Taps fans data out to several taps, in order. Nil entries are skipped.
type Taps []Tap

func (ts Taps) Data(s Stream, p []byte) {
	for _, t := range ts {
		if t != nil {
			t.Data(s, p)
		}
	}
}

// Result is what a finished relay reports.
type Result struct {
	ExitStatus *uint32 // nil if the target sent none
	ExitSignal string  // signal name, if the target sent exit-signal
}

// Copy buffers: a copier waits in Read holding its buffer, so an idle
// session would pin three large buffers. Each copier starts with a small one,
// takes a large pooled one when a read fills the small one (bulk data), and
// gives it back when reads come back small again. The small one is what an
// idle session holds per copier: keystrokes and prompts fit in it.
const (
	smallBuf = 512
	largeBuf = 64 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, largeBuf); return &b }}

func copyCounted(dst io.Writer, src io.Reader, n *atomic.Int64, tap Tap, s Stream) {
	small := make([]byte, smallBuf)
	var large *[]byte
	defer func() {
		if large != nil {
			bufPool.Put(large)
		}
	}()
	for {
		buf := small
		if large != nil {
			buf = *large
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			// The tap sees the data before the other side can answer it, so
			// a parser pairing requests with replies sees them in order.
			if tap != nil {
				tap.Data(s, buf[:nr])
			}
			nw, werr := dst.Write(buf[:nr])
			n.Add(int64(nw))
			if werr != nil {
				return
			}
		}
		if rerr != nil {
			return
		}
		switch {
		case large == nil && nr == len(small):
			large = bufPool.Get().(*[]byte)
		case large != nil && nr < smallBuf:
			bufPool.Put(large)
			large = nil
		}
	}
}

// Channels relays a forwarded channel (direct-tcpip, forwarded-tcpip):
// EOF passes as soon as one side half-closes. See relay for the arguments.
func Channels(down ssh.Channel, downReqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request, filter Filter, c *Counters, beforeClose ...func(Result)) Result {
	return relay(false, down, downReqs, up, upReqs, filter, c, beforeClose)
}

// Session relays a session channel. The target's output reaches the user in
// full, then its exit-status (or exit-signal), then EOF, then the close: a
// client whose own stdin is already at EOF closes the channel on our EOF,
// and an exit status sent after that would be lost (OpenSSH multiplexing
// reports 255). EOF is held until the exit status or the target's close.
func Session(down ssh.Channel, downReqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request, filter Filter, c *Counters, beforeClose ...func(Result)) Result {
	return relay(true, down, downReqs, up, upReqs, filter, c, beforeClose)
}

// relay joins down (the user's accepted channel) and up (the target's
// channel) until both are done, then closes both. downReqs and upReqs are
// the channels' request streams (never nil: x/crypto always provides them).
// filter may be nil (everything passes). beforeClose hooks run after the
// target's output and exit status have reached the user and before EOF and
// the close, so the caller may add a last message.
func relay(session bool, down ssh.Channel, downReqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request, filter Filter, c *Counters, beforeClose []func(Result)) Result {
	r := start(session, down, downReqs, up, upReqs, filter, c)
	r.Loop()
	return r.Finish(beforeClose...)
}

// Run is a session relay whose request loop its caller drives: StartSession
// starts the copiers; until Done, the caller receives from the channels
// Pending returns and hands what it got to Step (Loop does both in the
// caller's goroutine); then Finish delivers the exit status and closes both
// channels. A Run is used by one goroutine at a time. It lets a goroutine
// that selects on other channels too (a connection's loop) serve an idle
// session's requests without a goroutine of the session's own.
type Run struct {
	session          bool
	down, up         ssh.Channel
	downReqs, upReqs <-chan *ssh.Request
	outEnd           <-chan struct{}
	toUp, toDown     sender
	exits            []*ssh.Request
	outEnded, upEnd  bool
}

// maxQueued bounds the requests waiting to be sent on to one side; past it
// the loop waits for room (a peer that floods requests while not answering
// the ones sent to it is held back, as x/crypto holds a connection whose
// reader falls behind).
const maxQueued = 64

// sender passes requests to one side in order, and each answer back, from a
// goroutine that runs only while some wait: the loop serving the requests
// never waits for a peer's answer (it may serve a connection's other
// channels too, and a peer that floods requests while an answer is due
// would otherwise stall it).
type sender struct {
	ch      ssh.Channel
	filter  Filter
	mu      sync.Mutex
	room    sync.Cond // signalled when the queue shrinks; L is &mu
	queue   []*ssh.Request
	running bool
	wg      sync.WaitGroup // the running goroutine
}

func (s *sender) push(req *ssh.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.room.L == nil {
		s.room.L = &s.mu
	}
	for len(s.queue) >= maxQueued {
		s.room.Wait()
	}
	s.queue = append(s.queue, req)
	if !s.running {
		s.running = true
		s.wg.Add(1)
		go s.run()
	}
}

func (s *sender) run() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.running = false
			s.queue = nil
			s.mu.Unlock()
			return
		}
		req := s.queue[0]
		s.queue = s.queue[1:]
		s.room.Signal()
		s.mu.Unlock()
		forward(s.ch, req, s.filter)
	}
}

// StartSession starts relaying a session channel as Session does, and
// returns the Run whose requests the caller serves.
func StartSession(down ssh.Channel, downReqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request, filter Filter, c *Counters) *Run {
	return start(true, down, downReqs, up, upReqs, filter, c)
}

func start(session bool, down ssh.Channel, downReqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request, filter Filter, c *Counters) *Run {
	if c == nil {
		c = &Counters{}
	}
	// user -> target, then EOF.
	go func() {
		copyCounted(up, down, &c.In, c.Tap, ToTarget)
		_ = up.CloseWrite()
	}()

	// target -> user: stdout and stderr. For a forwarded channel EOF follows
	// at once; for a session it waits for the exit status.
	outDone := make(chan struct{})
	var copiers atomic.Int32
	copiers.Store(2)
	copied := func() {
		if copiers.Add(-1) == 0 {
			if !session {
				_ = down.CloseWrite()
			}
			close(outDone)
		}
	}
	go func() { defer copied(); copyCounted(down, up, &c.Out, c.Tap, ToUser) }()
	go func() { defer copied(); copyCounted(down.Stderr(), up.Stderr(), &c.Out, c.Tap, ToUserStderr) }()
	return &Run{session: session, down: down, up: up, downReqs: downReqs, upReqs: upReqs, outEnd: outDone,
		toUp: sender{ch: up, filter: filter}, toDown: sender{ch: down}}
}

// Pending returns the channels to receive from next: the user's requests,
// the target's, and the end of the target's output. A nil one has ended.
func (r *Run) Pending() (downReqs, upReqs <-chan *ssh.Request, outEnd <-chan struct{}) {
	return r.downReqs, r.upReqs, r.outEnd
}

// Done says the relay has nothing left to wait for: the output has drained
// and (for a session) the exit status came or the target closed.
func (r *Run) Done() bool {
	if !r.outEnded {
		return false
	}
	if r.session {
		return len(r.exits) > 0 || r.upEnd
	}
	return r.upEnd
}

// DownRequest handles what was received from the user's requests (ok false:
// the stream closed). The user's requests go to the target, in order, and
// their answers back in the same order; when the user's channel closes, the
// target's is closed.
func (r *Run) DownRequest(req *ssh.Request, ok bool) {
	if !ok {
		r.downReqs = nil
		_ = r.up.Close()
		return
	}
	r.toUp.push(req)
}

// UpRequest handles what was received from the target's requests: they go
// to the user, except the exit status, kept until the output has drained.
func (r *Run) UpRequest(req *ssh.Request, ok bool) {
	if !ok {
		r.upReqs, r.upEnd = nil, true
		return
	}
	if req.Type == "exit-status" || req.Type == "exit-signal" {
		r.exits = append(r.exits, req)
		return
	}
	r.toDown.push(req)
}

// OutputEnded records that the end of the output was received.
func (r *Run) OutputEnded() { r.outEnd, r.outEnded = nil, true }

// Loop serves the requests in the caller's goroutine until Done.
func (r *Run) Loop() {
	for !r.Done() {
		select {
		case req, ok := <-r.downReqs:
			r.DownRequest(req, ok)
		case req, ok := <-r.upReqs:
			r.UpRequest(req, ok)
		case <-r.outEnd:
			r.OutputEnded()
		}
	}
}

// Finish, once Done, delivers the exit status, runs the beforeClose hooks,
// sends EOF and closes both channels; it returns when the user's channel has
// closed.
func (r *Run) Finish(beforeClose ...func(Result)) Result {
	var res Result
	for _, req := range r.exits {
		res.record(req)
		_, _ = r.down.SendRequest(req.Type, false, req.Payload)
	}
	for _, f := range beforeClose { // before EOF: a session's last words go to stderr
		f(res)
	}
	if r.session {
		_ = r.down.CloseWrite()
	}
	_ = r.down.Close()
	_ = r.up.Close()
	// The target's requests until its close (it may never answer ours: that
	// ends with its connection); the user's until the user's channel closes.
	if r.upReqs != nil {
		go ssh.DiscardRequests(r.upReqs)
	}
	if r.downReqs != nil {
		ssh.DiscardRequests(r.downReqs)
	}
	// The user's requests still queued have been sent on (or failed): the
	// filter sees none after the relay.
	r.toUp.wg.Wait()
	return res
}

// forward passes req to ch unless filter refuses it, and answers it with
// ch's answer.
func forward(ch ssh.Channel, req *ssh.Request, filter Filter) {
	if filter != nil && !filter(req) {
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
		return
	}
	ok, err := ch.SendRequest(req.Type, req.WantReply, req.Payload)
	if req.WantReply {
		_ = req.Reply(ok && err == nil, nil)
	}
}

func (r *Result) record(req *ssh.Request) {
	switch req.Type {
	case "exit-status":
		var st struct{ Status uint32 }
		if ssh.Unmarshal(req.Payload, &st) == nil {
			r.ExitStatus = &st.Status
		}
	case "exit-signal":
		var sig struct {
			Signal     string
			CoreDumped bool
			Msg, Lang  string
		}
		if ssh.Unmarshal(req.Payload, &sig) == nil {
			r.ExitSignal = sig.Signal
		}
	}
}
