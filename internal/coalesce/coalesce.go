// Package coalesce holds the net.Conn wrapper the gate puts under x/crypto's SSH
// transport. x/crypto writes every packet through a 4 KiB bufio.Writer and
// flushes it: a 32 KiB packet reaches the connection as two writes, first
// bufio's buffer (the length prefix and the first 4 KiB of ciphertext), then
// the rest of the cipher's own output buffer, which bufio passes on without
// copying. On a bare socket that is two syscalls per packet.
//
// Conn sends both in one writev and copies only the small one. x/crypto
// reuses both buffers as soon as Write returns (x/crypto v0.58
// ssh/transport.go, ssh/cipher.go: bufio refills its buffer with the next
// packet's prefix, the cipher seals the next packet into the same c.buf; the
// transport holds its lock around the whole packet, so nothing in between
// tells the connection the buffer is about to change). A slice can so not be
// held past Write's return: a large write (more than copyMax bytes) is sent
// from the caller's goroutine, after the small writes queued before it and
// in the same writev, and Write returns once it is on the socket. Small
// writes (at most copyMax: bufio's flushes, keystrokes, window adjusts) are
// copied and queued, and a flusher sends them unless a large write takes
// them along first, so a keystroke leaves at once (a goroutine hop). A
// write of exactly copyMax bytes is bufio's buffer filled in the middle of a
// packet, the rest of which follows at once from the same goroutine: it
// starts no flusher (a goroutine started per packet wakes another thread
// per packet) but a timer that sends it after deferMax unless a later write
// took it along; the timer is armed at most once per deferMax.
// Reads go through a larger buffer while data streams in (see read.go).
//
// Must not import: any project package
package coalesce

import (
	"io"
	"net"
	"sync"
	"time"
)

// copyMax is the largest write that is copied and queued rather than sent
// in place: x/crypto's bufio.Writer is 4 KiB, so everything it flushes from
// its own buffer is at most that, and every larger write is the cipher's
// buffer passed through.
const copyMax = 4 << 10

// bufSize is the capacity of a copy buffer.
const bufSize = 64 << 10

// maxPending bounds the copied bytes queued behind the socket (small writes
// block beyond it), so that a copy buffer never grows.
const maxPending = bufSize - copyMax

// freeBufs holds the copy buffers of connections with nothing queued: an
// idle connection holds none, a busy one takes and gives back the same
// ones. It is a bounded free list rather than a sync.Pool: a relay
// allocates a fresh slice per packet (x/crypto), so the collector runs every
// few MiB and would empty a pool as often. It keeps at most freeBufCount
// buffers in all.
const freeBufCount = 16

var freeBufs = make(chan []byte, freeBufCount)

func getBuf() []byte {
	select {
	case b := <-freeBufs:
		return b[:0]
	default:
		return make([]byte, 0, bufSize)
	}
}

func putBuf(b []byte) {
	if cap(b) != bufSize {
		return
	}
	select {
	case freeBufs <- b[:0]:
	default:
	}
}

// deferMax bounds how long a write of exactly copyMax bytes waits for the
// rest of its packet.
const deferMax = time.Millisecond

// closeFlushTimeout bounds how long Close waits for queued bytes to leave.
const closeFlushTimeout = 2 * time.Second

// Conn is a net.Conn whose small writes are queued and sent with the next
// large one, and whose reads are buffered while data streams in.
type Conn struct {
	net.Conn
	w io.Writer // receives the writes: the socket itself where it is known, for writev

	mu      sync.Mutex
	cond    sync.Cond
	pending []byte // copies of small writes, not yet in flight
	spare   []byte // the other copy buffer, or nil
	vec     [2][]byte
	busy    bool // a write to the socket is in flight
	spawned bool // a flusher goroutine is pending or running
	held    bool // pending waits for the rest of a packet (see deferMax)
	armed   bool // timer will fire
	timer   *time.Timer
	err     error
	rd      readState
}

// New wraps c; its writes go to c.
func New(c net.Conn) *Conn { return NewWriter(c, c) }

// NewWriter wraps c with w receiving the writes instead of c: the socket
// under a wrapper that only changes reads (writev needs the *net.TCPConn or
// *net.UnixConn itself; a wrapper hides it). A write to w must be what a
// write to c would be.
func NewWriter(c net.Conn, w io.Writer) *Conn {
	x := &Conn{Conn: c, w: w}
	x.cond.L = &x.mu
	return x
}

// Write sends p. A write of more than copyMax bytes returns once p is on the
// socket, together with the small writes queued before it; a smaller one is
// copied and queued. An error of an earlier write is returned by a later
// call.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) <= copyMax {
		for c.err == nil && len(c.pending) >= maxPending {
			c.cond.Wait()
		}
		if c.err != nil {
			return 0, c.err
		}
		if c.pending == nil {
			c.pending = getBuf()
		}
		c.pending = append(c.pending, p...) // within its capacity: see maxPending
		if c.busy || c.spawned {
			return len(p), nil
		}
		if len(p) == copyMax && !c.held {
			c.held = true
			if !c.armed {
				c.armed = true
				if c.timer == nil {
					c.timer = time.AfterFunc(deferMax, c.timeout)
				} else {
					c.timer.Reset(deferMax)
				}
			}
			return len(p), nil
		}
		c.held = false
		c.spawned = true
		go c.flush()
		return len(p), nil
	}
	for c.busy && c.err == nil {
		c.cond.Wait()
	}
	if c.err != nil {
		return 0, c.err
	}
	c.send(p)
	if c.err != nil {
		// send sets err only after the write returned: p is not used after this.
		return 0, c.err
	}
	return len(p), nil
}

// send writes what is queued and then p (which may be nil) in one call,
// writev where w is a socket. Called with mu held and !busy; returns with mu
// held.
func (c *Conn) send(p []byte) {
	c.busy = true
	c.held = false
	own := c.pending
	c.pending = c.spare
	c.spare = nil
	c.mu.Unlock()

	v := c.vec[:0]
	if len(own) > 0 {
		v = append(v, own)
	}
	if len(p) > 0 {
		v = append(v, p)
	}
	var err error
	switch len(v) {
	case 1:
		_, err = c.w.Write(v[0])
	case 2:
		bufs := net.Buffers(v)
		_, err = bufs.WriteTo(c.w) // consumes bufs, not c.vec
	}
	c.vec = [2][]byte{}

	c.mu.Lock()
	c.busy = false
	if own != nil {
		if c.pending == nil {
			c.pending = own[:0]
		} else {
			c.spare = own[:0]
		}
	}
	if err != nil && c.err == nil {
		c.err = err
	}
	if c.err != nil {
		c.pending = c.pending[:0]
	}
	if len(c.pending) == 0 && !c.spawned {
		c.release()
	} else if len(c.pending) > 0 && !c.spawned {
		c.spawned = true
		go c.flush()
	}
	c.cond.Broadcast()
}

// release gives the copy buffers back when nothing is queued.
func (c *Conn) release() {
	if c.pending != nil && len(c.pending) == 0 {
		putBuf(c.pending)
		c.pending = nil
	}
	if c.spare != nil {
		putBuf(c.spare)
		c.spare = nil
	}
}

// flush sends what is queued while no other write is in flight. A large
// write in flight takes the queue along or, returning, starts a new flusher
// if anything is left.
func (c *Conn) flush() {
	c.mu.Lock()
	for !c.busy && len(c.pending) > 0 && c.err == nil {
		c.send(nil)
	}
	c.spawned = false
	if !c.busy && len(c.pending) == 0 {
		c.release()
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

// timeout sends a held write that nothing took along.
func (c *Conn) timeout() {
	c.mu.Lock()
	c.armed = false
	if !c.held {
		c.mu.Unlock()
		return
	}
	c.held = false
	if c.busy || c.spawned || c.err != nil {
		c.mu.Unlock()
		return
	}
	c.spawned = true
	c.mu.Unlock()
	c.flush()
}

// Close sends what is queued (for at most a short while) and closes.
func (c *Conn) Close() error {
	c.mu.Lock()
	if (c.busy || len(c.pending) > 0) && c.err == nil {
		t := time.AfterFunc(closeFlushTimeout, func() { _ = c.Conn.SetWriteDeadline(time.Now()) })
		for (c.busy || len(c.pending) > 0) && c.err == nil {
			if !c.busy {
				c.send(nil)
				continue
			}
			c.cond.Wait()
		}
		t.Stop()
	}
	for c.busy { // a write that failed is still returning
		c.cond.Wait()
	}
	if c.err == nil {
		c.err = net.ErrClosed
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.pending != nil {
		c.pending = c.pending[:0]
	}
	c.release()
	c.cond.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}
