package coalesce

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// countConn counts the reads that reach the socket.
type countConn struct {
	net.Conn
	reads atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// packets writes n framed packets (4-byte length, then the body) of size
// body bytes each, numbered, as an SSH transport would.
func packets(w io.Writer, n, body int) error {
	buf := make([]byte, 4+body)
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint32(buf, uint32(body))
		for j := 4; j < len(buf); j++ {
			buf[j] = byte(i + j)
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// readPackets reads packets as x/crypto's transport does: through a 4 KiB
// bufio.Reader, the length first, then the body with io.ReadFull.
func readPackets(t *testing.T, r io.Reader, n, body int) {
	t.Helper()
	br := bufio.NewReaderSize(r, 4096)
	var prefix [4]byte
	buf := make([]byte, body)
	for i := 0; i < n; i++ {
		if _, err := io.ReadFull(br, prefix[:]); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if l := binary.BigEndian.Uint32(prefix[:]); l != uint32(body) {
			t.Fatalf("packet %d: length %d, want %d", i, l, body)
		}
		if _, err := io.ReadFull(br, buf); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		for j := range buf {
			if buf[j] != byte(i+j+4) {
				t.Fatalf("packet %d: byte %d is %d, want %d", i, j, buf[j], byte(i+j+4))
			}
		}
	}
}

// With data waiting in the kernel, x/crypto's reads of 32 KiB packets cost
// far less than one read syscall per packet through Conn (through the bare
// socket: two or more, a 4 KiB buffer fill and the rest of the packet).
func TestReadsPerPacket(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(net.Conn) net.Conn
		max  float64
	}{
		{"coalesce", func(c net.Conn) net.Conn { return New(c) }, 0.75},
		{"bare", func(c net.Conn) net.Conn { return c }, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			const n, body = 256, 32 << 10
			werr := make(chan error, 1)
			go func() { werr <- packets(a, n, body) }()
			time.Sleep(100 * time.Millisecond) // let the kernel buffers fill
			cc := &countConn{Conn: b}
			readPackets(t, tc.wrap(cc), n, body)
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			per := float64(cc.reads.Load()) / n
			t.Logf("%s: %.2f read syscalls per packet", tc.name, per)
			if per > tc.max {
				t.Fatalf("%.2f reads per packet, want at most %.2f", per, tc.max)
			}
			if tc.name == "bare" && per < 1.5 {
				t.Fatalf("bare socket: %.2f reads per packet: the test no longer shows what the buffer saves", per)
			}
		})
	}
}

// A connection that goes quiet after a burst gives its read buffer back, and
// small (interactive) reads never take one.
func TestReadBufferReleasedWhenQuiet(t *testing.T) {
	a, b := tcpPair(t)
	r := New(b)
	const n, body = 64, 32 << 10
	go packets(a, n, body)
	readPackets(t, r, n, body)
	if _, err := a.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	k, err := r.Read(got)
	if err != nil || string(got[:k]) != "tail" {
		t.Fatalf("read %q, %v", got[:k], err)
	}
	if r.rd.buf != nil {
		t.Fatal("a quiet connection still holds its read buffer")
	}
	for i := 0; i < 10; i++ {
		if _, err := a.Write([]byte{'k', byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r, got[:2]); err != nil || got[1] != byte(i) {
			t.Fatalf("keystroke %d: %q, %v", i, got[:2], err)
		}
		if r.rd.buf != nil {
			t.Fatalf("keystroke %d took a read buffer", i)
		}
	}
}

// A read deadline's timeout is an error for that read only: the bytes that
// arrive later are still read (sshd reads the client's version line under a
// short deadline, then goes on).
func TestReadTimeoutNotSticky(t *testing.T) {
	a, b := tcpPair(t)
	r := New(b)
	const n, body = 8, 32 << 10
	go packets(a, n, body)
	readPackets(t, r, n, body) // the buffer is taken
	r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := r.Read(make([]byte, 4096)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	r.SetReadDeadline(time.Time{})
	go packets(a, n, body)
	readPackets(t, r, n, body)
	a.Close()
	if k, err := r.Read(make([]byte, 10)); k != 0 || err != io.EOF {
		t.Fatalf("after the peer closed: %d, %v", k, err)
	}
}

// Reads of every size return the stream as sent.
func TestReadSizes(t *testing.T) {
	a, b := tcpPair(t)
	r := New(b)
	data := stream("sizes", 4<<20)
	go func() { a.Write(data); a.Close() }()
	var got bytes.Buffer
	sizes := []int{1, 4096, 7, 300 << 10, 32 << 10, 4096, 100, readBufSize, 5000}
	for k := 0; ; k++ {
		p := make([]byte, sizes[k%len(sizes)])
		n, err := r.Read(p)
		got.Write(p[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read %d bytes, other than the %d sent", got.Len(), len(data))
	}
}

// Buffers given back survive garbage collections (a relay's collector runs
// every few MiB: a sync.Pool would be empty by the next burst).
func TestFreeListsSurviveGC(t *testing.T) {
	for len(freeBufs) > 0 {
		<-freeBufs
	}
	for len(freeReadBufs) > 0 {
		<-freeReadBufs
	}
	b := getBuf()
	rb := getReadBuf()
	first, rfirst := &b[:1][0], &(*rb)[0]
	putBuf(b)
	rs := readState{buf: rb}
	rs.release()
	runtime.GC()
	runtime.GC()
	if b := getBuf(); &b[:1][0] != first {
		t.Error("the queue buffer given back was not reused after two collections")
	}
	if rb := getReadBuf(); &(*rb)[0] != rfirst {
		t.Error("the read buffer given back was not reused after two collections")
	}
}
