package xfer

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"testing"

	"github.com/sshgate/sshgate/internal/audit"
)

// sftpMsg is one SFTP packet of a scripted session, from the client
// (toTarget) or the server.
type sftpMsg struct {
	toTarget bool
	pkt      []byte
}

func sftpPkt(typ byte, fields ...any) []byte {
	b := []byte{0, 0, 0, 0, typ}
	for _, f := range fields {
		switch v := f.(type) {
		case uint32:
			b = binary.BigEndian.AppendUint32(b, v)
		case uint64:
			b = binary.BigEndian.AppendUint64(b, v)
		case string:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		case []byte:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// sftpScript is an upload of up (in chunks of 40000 bytes) and a download
// of down (32 KiB reads, the second answered before the first).
func sftpScript(up, down []byte) []sftpMsg {
	c := func(p []byte) sftpMsg { return sftpMsg{true, p} }
	s := func(p []byte) sftpMsg { return sftpMsg{false, p} }
	ok := func(id uint32) sftpMsg { return s(sftpPkt(sftpStatus, id, uint32(statusOK), "", "")) }
	m := []sftpMsg{
		c([]byte{0, 0, 0, 5, sftpInit, 0, 0, 0, 3}),
		s([]byte{0, 0, 0, 5, 2, 0, 0, 0, 3}),
		c(sftpPkt(sftpOpen, uint32(1), "/up.bin", uint32(pflagWrite|pflagTrunc|0x08), uint32(0))),
		s(sftpPkt(sftpHandle, uint32(1), "H1")),
	}
	id := uint32(10)
	for off := 0; off < len(up); off += 40000 {
		end := min(off+40000, len(up))
		m = append(m, c(sftpPkt(sftpWrite, id, "H1", uint64(off), up[off:end])), ok(id))
		id++
	}
	m = append(m, c(sftpPkt(sftpClose, id, "H1")), ok(id))
	id++
	m = append(m,
		c(sftpPkt(sftpOpen, id, "/down.bin", uint32(pflagRead), uint32(0))),
		s(sftpPkt(sftpHandle, id, "H2")))
	id++
	const rd = 32 << 10
	var reads []sftpMsg
	var answers []sftpMsg
	for off := 0; off <= len(down); off += rd {
		reads = append(reads, c(sftpPkt(sftpRead, id, "H2", uint64(off), uint32(rd))))
		if off == len(down) {
			answers = append(answers, s(sftpPkt(sftpStatus, id, uint32(statusEOF), "EOF", "")))
		} else {
			answers = append(answers, s(sftpPkt(sftpData, id, down[off:min(off+rd, len(down))])))
		}
		id++
	}
	if len(answers) > 2 {
		answers[0], answers[1] = answers[1], answers[0]
	}
	m = append(m, reads...)
	m = append(m, answers...)
	m = append(m, c(sftpPkt(sftpClose, id, "H2")), ok(id))
	return m
}

// feedScript feeds the script in pieces of at most chunk bytes (0: whole
// packets), scribbling over each piece once the parser has it: a parser
// that kept the relay's buffer would see garbage.
func feedScript(p Parser, m []sftpMsg, chunk int) {
	for _, msg := range m {
		b := append([]byte(nil), msg.pkt...)
		n := chunk
		if n == 0 {
			n = len(b)
		}
		for off := 0; off < len(b); off += n {
			piece := b[off:min(off+n, len(b))]
			if msg.toTarget {
				p.ToTarget(piece)
			} else {
				p.ToUser(piece)
			}
			for i := range piece {
				piece[i] = 0xEE
			}
		}
	}
}

// File data is hashed where the relay passed it, whatever the pieces:
// events do not depend on how the stream is cut, and the framers never hold
// more than a header.
func TestSFTPStreamPieces(t *testing.T) {
	up, down := stream64("up", 300000), stream64("down", 200000)
	want := []string{
		fmt.Sprintf("sftp write /up.bin upload size=300000 sha=%s ok", sum8(up)),
		fmt.Sprintf("sftp read /down.bin download size=200000 sha=%s ok", sum8(down)),
	}
	wantNoHash := []string{
		"sftp write /up.bin upload size=300000 ok",
		"sftp read /down.bin download size=200000 ok",
	}
	for _, noHash := range []bool{false, true} {
		for _, chunk := range []int{0, 1, 3, 7, 9, 100, 4096, 32 << 10, 32<<10 + 13, 1 << 20} {
			c := &collect{}
			p := For("subsystem", "sftp", c.emit, Options{NoHash: noHash}).(*SFTP)
			feedScript(p, sftpScript(up, down), chunk)
			p.End(true)
			w := want
			if noHash {
				w = wantNoHash
			}
			check(t, c.lines(), w...)
			if chunk > 0 && chunk < 1<<20 && (cap(p.c.buf) > 1024 || cap(p.s.buf) > 1024) {
				t.Errorf("chunk %d: the framers hold %d and %d bytes: data was assembled", chunk, cap(p.c.buf), cap(p.s.buf))
			}
		}
	}
}

func stream64(seed string, n int) []byte {
	b := make([]byte, n)
	x := uint64(len(seed)) * 0x9E3779B97F4A7C15
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// sftpRun feeds both streams whole, the client's first, in pieces of chunk
// bytes (0: in one piece each), and returns the events.
func sftpRun(c, s []byte, chunk int, noHash bool) []audit.Event {
	var evs []audit.Event
	p := For("subsystem", "sftp", func(e audit.Event) { evs = append(evs, e) }, Options{NoHash: noHash}).(*SFTP)
	feed := func(b []byte, fn func([]byte)) {
		b = append([]byte(nil), b...)
		n := chunk
		if n <= 0 {
			n = max(len(b), 1)
		}
		for off := 0; off < len(b); off += n {
			piece := b[off:min(off+n, len(b))]
			fn(piece)
			for i := range piece {
				piece[i] = 0xEE
			}
		}
	}
	feed(c, p.ToTarget)
	feed(s, p.ToUser)
	p.End(true)
	if len(p.pending) > maxPending || len(p.handles) > maxHandles {
		panic("unbounded")
	}
	return evs
}

// How the relay cuts the streams changes nothing: events from any pieces
// equal those from whole streams.
func FuzzSFTPPieces(f *testing.F) {
	var c, s []byte
	for _, m := range sftpScript(stream64("u", 70000), stream64("d", 70000)) {
		if m.toTarget {
			c = append(c, m.pkt...)
		} else {
			s = append(s, m.pkt...)
		}
	}
	f.Add(c, s, uint16(7), false)
	f.Add(c, s, uint16(1), true)
	f.Add([]byte("\x00\x00\x00\x05\x01\x00\x00\x00\x03"), []byte("\x00\x00\x00\x09\x67\x00\x00\x00\x01\x00\x00\x00\x00"), uint16(2), false)
	f.Fuzz(func(t *testing.T, c, s []byte, chunk uint16, noHash bool) {
		whole := sftpRun(c, s, 0, noHash)
		pieces := sftpRun(c, s, int(chunk%5000)+1, noHash)
		if !reflect.DeepEqual(whole, pieces) {
			t.Fatalf("events differ with pieces of %d:\nwhole: %+v\npieces: %+v", int(chunk%5000)+1, whole, pieces)
		}
	})
}
