// Package quickack makes a TCP connection acknowledge what it reads at
// once during its first reads: the SSH handshake.
//
// Why: OpenSSH's ssh (and sshd) leave Nagle's algorithm on for sessions
// without a terminal, so a second small packet written before the first
// is acknowledged waits for that acknowledgement. The SSH handshake has two
// such places on the client's side: its KEXINIT then its key exchange
// init, and its NEWKEYS then its service request. The peer (the gate) has
// nothing to send back at those points, so Linux delays its ACK (up to its
// 40 ms minimum delayed-ACK timeout, more once it counts the connection as
// interactive), and each stall costs the user about 40 ms before the first
// byte: measured here, about 80 of the 100 ms a warm `ssh gate echo hi`
// took. TCP_QUICKACK around each read of the handshake sends the ACK as
// soon as the bytes are read, and leaves the connection in quick-ACK mode
// for what comes next.
//
// Only the first reads get it (they are few and small); a streaming
// connection's reads then cost nothing more than the wrapper's call.
//
// Must not import: any project package
package quickack

import (
	"net"
	"sync/atomic"
	"syscall"
)

// Reads is how many reads of a wrapped connection get quick ACKs: the SSH
// handshake, authentication and the first session's requests fit in it
// with room to spare (about 12 reads on the gate's side of a publickey
// login with one exec).
const Reads = 48

// Conn is a TCP connection whose first Reads reads are acknowledged at
// once.
type Conn struct {
	net.Conn
	rc   syscall.RawConn
	left atomic.Int32
}

// Wrap returns c with quick ACKs on its first Reads reads, or c itself
// when it is not a TCP connection (a unix socket has no ACKs to delay) or
// the system has no TCP_QUICKACK.
func Wrap(c net.Conn) net.Conn {
	if !supported {
		return c
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	q := &Conn{Conn: c, rc: rc}
	q.left.Store(Reads)
	return q
}

// Read reads from the connection; while quick ACKs last it asks for one
// before the read (leaving the delayed-ACK mode that a reply just sent
// may have entered) and after it (sending the ACK of what was read now,
// not when the delayed-ACK timer fires).
func (c *Conn) Read(p []byte) (int, error) {
	if c.left.Load() <= 0 {
		return c.Conn.Read(p)
	}
	c.left.Add(-1)
	c.quick()
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.quick()
	}
	return n, err
}

// Unwrap is the wrapped connection.
func (c *Conn) Unwrap() net.Conn { return c.Conn }

func (c *Conn) quick() {
	_ = c.rc.Control(func(fd uintptr) { setQuickAck(int(fd)) })
}
