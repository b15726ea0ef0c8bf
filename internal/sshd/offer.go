package sshd

import (
	"bytes"
	"net"
	"time"
)

// Offer chooses the ciphers and MACs offered to one client from its
// identification string ("SSH-2.0-OpenSSH_9.2p1 ..."; "" when the client
// did not send one first). The client's order decides what a connection
// gets, so a server can only steer a client by what it leaves out: an offer
// per client gives OpenSSH its fast cipher without locking out clients that
// lack it.
type Offer func(clientVersion string) (ciphers, macs []string)

// versionWait is how long the gate waits for the client's identification
// line before it offers its algorithms. Clients send it at once (OpenSSH,
// PuTTY, paramiko, dropbear, x/crypto); one that waits for the server's
// line first gets the broad offer after this delay.
const versionWait = 300 * time.Millisecond

// maxVersionLine is RFC 4253's bound on the identification line.
const maxVersionLine = 255

// peekVersion reads the client's identification line from c, for at most
// wait (never past deadline), and returns it with a conn that hands what
// was read to x/crypto again before the rest. The line is "" when none came
// in time or it was malformed (x/crypto then refuses it as usual).
func peekVersion(c net.Conn, wait time.Duration, deadline time.Time) (string, net.Conn) {
	until := time.Now().Add(wait)
	if deadline.Before(until) {
		until = deadline
	}
	_ = c.SetReadDeadline(until)
	defer func() { _ = c.SetReadDeadline(deadline) }()
	buf := make([]byte, 0, 512)
	tmp := make([]byte, 512)
	for len(buf) <= maxVersionLine {
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			if i > maxVersionLine {
				break
			}
			line := string(bytes.TrimRight(buf[:i], "\r"))
			return line, &replayConn{Conn: c, pending: buf}
		}
		if err != nil {
			break
		}
	}
	return "", &replayConn{Conn: c, pending: buf}
}

// replayConn returns pending before reading c.
type replayConn struct {
	net.Conn
	pending []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}
