// Package coalesce holds the net.Conn wrapper the gate puts under x/crypto's SSH
// transport. x/crypto writes every packet through a 4 KiB bufio.Writer and
// flushes it: a 32 KiB packet reaches the connection as two writes, first
// the bufio buffer (the length prefix and the first 4 KiB of ciphertext),
// then the rest of the cipher's own output buffer, which bufio hands on
// without copying. On a bare socket that is two syscalls per packet.
//
// Conn sends them in one writev without copying the packet: a large write is
// queued by reference and Write returns once its bytes are on the socket,
// because x/crypto reuses both buffers as soon as Write returns (bufio
// refills its buffer for the next packet, the cipher seals the next packet
// into its own: x/crypto v0.58 ssh/transport.go, ssh/cipher.go). Only small
// writes (at most copyMax bytes: bufio's flushes) are copied, queued, and
// left to a flusher that drains whatever has accumulated, so a keystroke's
// packet leaves at once (a goroutine hop) and the next packet's large write
// usually joins the same writev (group commit).
//
// The price: x/crypto holds its transport lock across the write to the
// connection, so on one SSH connection writes never overlap and each large
// packet costs one send of its own (about one writev per 32 KiB packet,
// where a copying queue sent about two packets per write while the next was
// being encrypted). Measured on a loaded 2-core machine with
// BenchmarkSSHChannel: about 10-15% more process CPU per GiB than copying
// (3.3-3.6 vs 2.9-3.1 s, medians of 8-12 alternating runs) on loopback.
//
// Must not import: any project package
package coalesce

import (
	"io"
	"net"
	"sync"
	"time"
)

// copyMax is the largest write that is copied and queued rather than
// written in place. x/crypto's bufio.Writer is 4 KiB: everything it flushes
// from its own buffer is at most that, and every larger write is the
// cipher's buffer, passed through.
const copyMax = 4 << 10

// bufSize is the capacity of the pooled buffers holding copied writes.
const bufSize = 64 << 10

// maxPending bounds the copied bytes queued behind the socket (small writes
// block beyond it), so that a copy buffer never grows.
const maxPending = bufSize - copyMax

// bufs holds the copy buffers of connections with nothing to send: an idle
// connection holds none, a busy one reuses the same two.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, bufSize); return &b }}

func getBuf() []byte { return (*bufs.Get().(*[]byte))[:0] }

func putBuf(b []byte) {
	if cap(b) == bufSize {
		b = b[:0]
		bufs.Put(&b)
	}
}

// closeFlushTimeout bounds how long Close waits for queued bytes to leave.
const closeFlushTimeout = 2 * time.Second

// Conn is a net.Conn whose writes are coalesced.
type Conn struct {
	net.Conn
	w io.Writer // receives the writes: the socket itself where it is known, for writev

	mu      sync.Mutex
	cond    sync.Cond
	q       net.Buffers // queued in order: copies (in fill) and callers' slices
	lastOwn bool        // q's last entry is fill[ownAt:], so a copy extends it
	ownAt   int
	fill    []byte      // holds the copies in q (len(fill) bytes, at most bufSize)
	spare   []byte      // the copy buffer of the write in flight, or nil
	qv      net.Buffers // the batch in flight (reused backing array)
	queued  int64       // bytes ever queued
	sent    int64       // bytes ever written (the first sent bytes of the stream)
	busy    bool        // a write to the socket is in flight
	spawned bool        // a flusher goroutine is pending or running
	err     error
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
// socket (possibly together with other writes); a smaller one is copied and
// queued. An error of an earlier write is returned by a later call.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) <= copyMax {
		for c.err == nil && len(c.fill) >= maxPending {
			c.cond.Wait()
		}
		if c.err != nil {
			return 0, c.err
		}
		if c.fill == nil {
			c.fill = getBuf()
		}
		start := len(c.fill)
		c.fill = append(c.fill, p...) // within its capacity: see maxPending
		if c.lastOwn {
			c.q[len(c.q)-1] = c.fill[c.ownAt:]
		} else {
			c.q = append(c.q, c.fill[start:])
			c.lastOwn, c.ownAt = true, start
		}
		c.queued += int64(len(p))
		if !c.busy && !c.spawned {
			c.spawned = true
			go c.flush()
		}
		return len(p), nil
	}
	if c.err != nil {
		return 0, c.err
	}
	c.q = append(c.q, p)
	c.lastOwn = false
	c.queued += int64(len(p))
	end := c.queued
	for c.sent < end && c.err == nil {
		if c.busy {
			c.cond.Wait()
			continue
		}
		c.writeLocked()
	}
	// An error leaves nothing in flight (writeLocked sets it after the
	// write returned, Close after waiting): p is not used after this.
	if c.sent < end {
		return 0, c.err
	}
	return len(p), nil
}

// writeLocked writes everything queued in one call (writev where w is a
// socket). Called with mu held and !busy; returns with mu held.
func (c *Conn) writeLocked() {
	if len(c.q) == 0 {
		return
	}
	c.busy = true
	batch := append(c.qv[:0], c.q...)
	clear(c.q)
	c.q = c.q[:0]
	c.lastOwn = false
	own := c.fill // the copies in batch live here until the write returns
	c.fill = c.spare
	if c.fill != nil {
		c.fill = c.fill[:0]
	}
	c.spare = nil
	c.mu.Unlock()

	v := batch
	written, err := v.WriteTo(c.w) // consumes v, not batch
	clear(batch)

	c.mu.Lock()
	c.qv = batch[:0]
	c.sent += written
	if own != nil {
		if c.spare == nil {
			c.spare = own[:0]
		} else {
			putBuf(own)
		}
	}
	if err != nil && c.err == nil {
		c.err = err
	}
	if c.err != nil {
		clear(c.q)
		c.q = c.q[:0]
		c.lastOwn = false
	}
	c.busy = false
	if len(c.q) == 0 {
		c.release()
	} else if !c.spawned && c.err == nil {
		c.spawned = true
		go c.flush()
	}
	c.cond.Broadcast()
}

// release gives the copy buffers back to the pool when nothing is queued.
func (c *Conn) release() {
	if c.fill != nil && len(c.q) == 0 {
		putBuf(c.fill)
		c.fill = nil
	}
	if c.spare != nil {
		putBuf(c.spare)
		c.spare = nil
	}
}

// flush drains the queue while no other write is in flight. A write in
// flight (a large Write sending the queue in place) starts a new flusher
// when it returns if anything is left.
func (c *Conn) flush() {
	c.mu.Lock()
	for !c.busy && len(c.q) > 0 && c.err == nil {
		c.writeLocked()
	}
	c.spawned = false
	c.cond.Broadcast()
	c.mu.Unlock()
}

// Close sends what is queued (for at most a short while) and closes.
func (c *Conn) Close() error {
	c.mu.Lock()
	if (c.busy || len(c.q) > 0) && c.err == nil {
		t := time.AfterFunc(closeFlushTimeout, func() { _ = c.Conn.SetWriteDeadline(time.Now()) })
		for (c.busy || len(c.q) > 0) && c.err == nil {
			if !c.busy {
				c.writeLocked()
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
	clear(c.q)
	c.q = c.q[:0]
	c.lastOwn = false
	c.release()
	c.cond.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}
