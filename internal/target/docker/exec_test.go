package docker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
)

func frame(kind byte, payload string) []byte {
	h := make([]byte, 8, 8+len(payload))
	h[0] = kind
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
	return append(h, payload...)
}

// stdoutOf is the stdout an exec stream carries: the payloads of its stdout
// frames, up to where the stream breaks off.
func stdoutOf(b []byte) []byte {
	var out []byte
	for len(b) >= 8 {
		n := int(binary.BigEndian.Uint32(b[4:8]))
		kind := b[0]
		b = b[8:]
		take := min(n, len(b))
		if kind == 1 {
			out = append(out, b[:take]...)
		}
		if take < n {
			break
		}
		b = b[take:]
	}
	return out
}

func readExec(data []byte) ([]byte, error) {
	c := &execConn{br: bufio.NewReader(bytes.NewReader(data)), name: "t", log: slog.New(slog.DiscardHandler)}
	var out []byte
	buf := make([]byte, 7) // small reads cross frame boundaries
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

func TestExecConnDemux(t *testing.T) {
	var s []byte
	s = append(s, frame(1, "hello ")...)
	s = append(s, frame(2, "a warning")...)
	s = append(s, frame(1, "")...)
	s = append(s, frame(3, "engine says")...)
	s = append(s, frame(1, "world, and more than seven bytes")...)
	out, err := readExec(s)
	if string(out) != "hello world, and more than seven bytes" || err != io.EOF {
		t.Fatalf("read %q, %v", out, err)
	}
	out, err = readExec(append(frame(1, "abc"), frame(1, "defgh")[:10]...))
	if string(out) != "abcde" || err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated: read %q, %v", out, err)
	}
}

func FuzzExecConnDemux(f *testing.F) {
	f.Add(append(frame(1, "out"), frame(2, "err")...))
	f.Add(frame(2, string(make([]byte, 5000))))
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 'x'})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := readExec(data)
		if err == nil {
			t.Fatal("no error at the end of the stream")
		}
		if want := stdoutOf(data); !bytes.Equal(out, want) {
			t.Fatalf("read %q, want %q", out, want)
		}
	})
}
