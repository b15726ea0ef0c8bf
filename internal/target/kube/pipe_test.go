package kube

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"math/big"
	"os"
	"testing"
	"time"
)

// TestStdinPipe: bytes arrive in order and complete across writes of any
// size, a read takes what several writes queued (full 32 KiB reads while
// the writer is ahead), CloseWrite gives EOF after the queue, CloseRead
// fails the writer, and a write deadline ends a blocked write.
func TestStdinPipe(t *testing.T) {
	p := newStdinPipe()
	data := make([]byte, 3<<20+11)
	rand.Read(data)
	go func() {
		for b := data; len(b) > 0; {
			n, _ := rand.Int(rand.Reader, big.NewInt(40<<10))
			k := min(len(b), int(n.Int64())+1)
			if _, err := p.Write(b[:k]); err != nil {
				t.Error(err)
				return
			}
			b = b[k:]
		}
		p.CloseWrite()
	}()
	var got bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		n, err := p.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read %d bytes, not the %d written", got.Len(), len(data))
	}

	// Several small writes, then one read takes them all (up to its size).
	p = newStdinPipe()
	for range 5 {
		p.Write(make([]byte, 10<<10))
	}
	if n, err := p.Read(buf); n != 32<<10 || err != nil {
		t.Errorf("read after 50 KiB of writes: %d, %v; want a full 32 KiB", n, err)
	}
	if n, err := p.Read(buf); n != 18<<10 || err != nil {
		t.Errorf("second read: %d, %v; want the 18 KiB left", n, err)
	}
	if p.ring != nil {
		t.Errorf("a drained pipe holds its ring")
	}

	// A full pipe blocks the writer until the deadline.
	p = newStdinPipe()
	p.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := p.Write(make([]byte, stdinMax+1))
	if n != stdinMax || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write past a full pipe: %d, %v; want %d and the deadline", n, err, stdinMax)
	}
	p.SetWriteDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := p.Write([]byte("x")); done <- err }()
	time.Sleep(50 * time.Millisecond)
	p.CloseRead()
	if err := <-done; !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("write blocked when the reader went: %v", err)
	}
	if _, err := p.Read(buf); err != io.EOF {
		t.Errorf("read after CloseRead: %v", err)
	}
}
