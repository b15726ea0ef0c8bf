package kube

import (
	"io"
	"os"
	"sync"
	"time"
)

// stdinPipe carries what the gate writes into an exec stream to client-go's
// stdin copy, which reads 32 KiB at a time and sends each read as one
// message (a SPDY data frame or a WebSocket message) through the API
// server, the kubelet and the runtime, every hop paying per message. Over a
// net.Pipe a read ends with the write it is in, so that the SSH packets
// (32 KiB of data and their framing, a little over 32 KiB each) went as
// one full message and one of a few hundred bytes; here a read takes
// whatever is queued, up to the 32 KiB, so that while the stream is behind
// (a bulk transfer) its messages are full. Writes block while stdinMax
// bytes are queued; the ring is taken on the first write and given back
// whenever it drains, so that an idle stream holds none.
type stdinPipe struct {
	mu       sync.Mutex
	cond     sync.Cond
	ring     []byte
	head, n  int  // queued: n bytes from ring[head], wrapping
	wclosed  bool // the writer is done: Read gives io.EOF once drained
	rclosed  bool // the reader is gone: Write fails
	expired  bool // the write deadline passed
	deadline *time.Timer
}

// stdinMax bounds what a stream queues: two full reads.
const stdinMax = 64 << 10

var rings = sync.Pool{New: func() any { b := make([]byte, stdinMax); return &b }}

func newStdinPipe() *stdinPipe {
	p := &stdinPipe{}
	p.cond.L = &p.mu
	return p
}

func (p *stdinPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	done := 0
	for len(b) > 0 {
		for p.n == stdinMax && !p.rclosed && !p.wclosed && !p.expired {
			p.cond.Wait()
		}
		switch {
		case p.rclosed || p.wclosed:
			return done, io.ErrClosedPipe
		case p.expired:
			return done, os.ErrDeadlineExceeded
		}
		if p.ring == nil {
			p.ring, p.head = *rings.Get().(*[]byte), 0
		}
		tail := (p.head + p.n) % stdinMax
		k := copy(p.ring[tail:min(stdinMax, tail+stdinMax-p.n)], b)
		p.n += k
		done += k
		b = b[k:]
		p.cond.Broadcast()
	}
	return done, nil
}

func (p *stdinPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n == 0 && !p.wclosed && !p.rclosed {
		p.cond.Wait()
	}
	if p.n == 0 {
		return 0, io.EOF
	}
	done := 0
	for done < len(b) && p.n > 0 {
		k := copy(b[done:], p.ring[p.head:min(stdinMax, p.head+p.n)])
		p.head = (p.head + k) % stdinMax
		p.n -= k
		done += k
	}
	if p.n == 0 {
		p.release()
	}
	p.cond.Broadcast()
	return done, nil
}

// release gives the drained ring back (under mu).
func (p *stdinPipe) release() {
	if p.ring != nil {
		r := p.ring
		p.ring = nil
		rings.Put(&r)
	}
}

// CloseWrite ends the stream's stdin once what is queued has been read.
func (p *stdinPipe) CloseWrite() {
	p.mu.Lock()
	p.wclosed = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// CloseRead is the reader going away: writes fail, what is queued is dropped.
func (p *stdinPipe) CloseRead() {
	p.mu.Lock()
	p.rclosed = true
	p.n = 0
	p.release()
	if p.deadline != nil {
		p.deadline.Stop()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// SetWriteDeadline makes writes blocked at t, or later, fail (zero: never).
func (p *stdinPipe) SetWriteDeadline(t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.deadline != nil {
		p.deadline.Stop()
		p.deadline = nil
	}
	p.expired = false
	if t.IsZero() {
		return
	}
	d := time.Until(t)
	if d <= 0 {
		p.expired = true
		p.cond.Broadcast()
		return
	}
	var tm *time.Timer
	tm = time.AfterFunc(d, func() {
		p.mu.Lock()
		if p.deadline == tm {
			p.expired = true
			p.cond.Broadcast()
		}
		p.mu.Unlock()
	})
	p.deadline = tm
}
