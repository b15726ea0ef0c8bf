package xfer

import "bytes"

// lineBuf assembles newline-terminated lines of a text protocol (SCP
// headers, FISH commands and replies) from the chunks a relay hands over,
// holding at most max bytes of an unfinished line.
type lineBuf struct {
	buf []byte
	max int
}

// empty reports whether no part of a line is pending.
func (l *lineBuf) empty() bool { return len(l.buf) == 0 }

// next consumes b up to and including its first newline. When a line ended
// there it returns it (without the newline) with ok set; rest is what
// follows. When the pending line grows past max, its bytes so far are
// dropped and over is set; rest then starts at the newline, if any.
func (l *lineBuf) next(b []byte) (line string, rest []byte, ok, over bool) {
	i := bytes.IndexByte(b, '\n')
	part := b
	if i >= 0 {
		part = b[:i]
	}
	if len(l.buf)+len(part) > l.max {
		l.buf = l.buf[:0]
		return "", b[len(part):], false, true
	}
	l.buf = append(l.buf, part...)
	if i < 0 {
		return "", nil, false, false
	}
	line = string(l.buf)
	l.buf = l.buf[:0]
	return line, b[i+1:], true, false
}
