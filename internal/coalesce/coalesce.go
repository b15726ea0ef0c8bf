// Package coalesce holds the net.Conn wrapper the gate puts under x/crypto's SSH
// transport. x/crypto writes every packet through a 4 KiB bufio.Writer and
// flushes it, which costs two write syscalls per 32 KiB packet and blocks
// the writer (and so the relay) for each. Conn queues writes and a flusher
// sends whatever has accumulated in one syscall, so packets produced while a
// write is in flight leave together, and encryption overlaps the syscall.
// Reads go through a larger buffer while data streams in (see read.go).
//
// Write copies p: x/crypto reuses both buffers it writes from as soon as
// Write returns (x/crypto v0.58 ssh/cipher.go, gcmCipher.writeCipherPacket
// and the others: the next packet is copied and sealed into the same c.buf;
// ssh/transport.go: bufio refills its buffer with the next prefix), and the
// transport holds its lock across the whole packet, so nothing tells Conn
// that a buffer is about to change. A coalescer without the copy must send
// large writes in place and return only once they are on the socket (it was
// built so, with writev of the queued small writes and the large one, and
// measured): one send per 32 KiB packet instead of about one per 3.3 (256 MiB
// over one x/crypto channel: 8225 writev and 889 write against 2467 write),
// and the receiver's reads double with it. On the gate (e2e/bench
// -baseline, both builds in the same runs) scp aes128-gcm cost more gate
// CPU per GiB in place than with the copy: 3.18 vs 2.61 s (1.97 vs 1.87 with
// file_hash: none) at load average 4-6, 4.29 vs 3.95 (3.53 vs 3.45) at 38-48;
// the CPU profiles show why: memmove 10.5% instead of 14.3%, syscalls 21%
// instead of 16%. The copy stays.
//
// Must not import: any project package
package coalesce

import (
	"net"
	"sync"
	"time"
)

// maxPending bounds the bytes queued behind the socket; writers block beyond it.
const maxPending = 512 << 10

// bufSize leaves room for one more packet past maxPending, so appends to a
// pooled buffer do not reallocate.
const bufSize = maxPending + 64<<10

// freeBufs holds the queue buffers of connections with nothing to send: an
// idle connection holds none, a busy one takes and gives back the same
// ones. It is a bounded free list rather than a sync.Pool: a relay
// allocates a fresh slice per packet (x/crypto), so the collector runs every
// few MiB and would empty a pool as often, and every refill is a 576 KiB
// allocation to zero. It keeps at most freeBufCount buffers in all.
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

// closeFlushTimeout bounds how long Close waits for queued bytes to leave.
const closeFlushTimeout = 2 * time.Second

// Conn is a net.Conn whose writes are queued and coalesced and whose reads
// are buffered while data streams in.
type Conn struct {
	net.Conn
	mu      sync.Mutex
	cond    sync.Cond
	pending []byte
	spare   []byte
	writing bool // a flusher is running
	err     error
	rd      readState
}

// New wraps c.
func New(c net.Conn) *Conn {
	w := &Conn{Conn: c}
	w.cond.L = &w.mu
	return w
}

// Write queues p. An error of an earlier write is returned by a later call.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && len(c.pending) >= maxPending {
		c.cond.Wait()
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	if c.pending == nil {
		c.pending = getBuf()
	}
	c.pending = append(c.pending, p...)
	if !c.writing {
		c.writing = true
		go c.flush()
	}
	c.mu.Unlock()
	return len(p), nil
}

func (c *Conn) flush() {
	c.mu.Lock()
	for len(c.pending) > 0 && c.err == nil {
		buf := c.pending
		if c.spare == nil {
			c.spare = getBuf()
		}
		c.pending = c.spare[:0]
		c.mu.Unlock()
		_, err := c.Conn.Write(buf)
		c.mu.Lock()
		c.spare = buf
		if err != nil && c.err == nil {
			c.err = err
		}
		c.cond.Broadcast()
	}
	c.writing = false
	if len(c.pending) == 0 {
		putBuf(c.pending)
		c.pending = nil
	}
	putBuf(c.spare)
	c.spare = nil
	c.cond.Broadcast()
	c.mu.Unlock()
}

// Close sends what is queued (for at most a short while) and closes.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.writing && c.err == nil {
		t := time.AfterFunc(closeFlushTimeout, func() { _ = c.Conn.SetWriteDeadline(time.Now()) })
		for c.writing && c.err == nil {
			c.cond.Wait()
		}
		t.Stop()
	}
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}
