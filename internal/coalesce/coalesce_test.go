package coalesce

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

// Bytes arrive complete and in order, and Close sends what was queued.
func TestOrderAndCloseFlushes(t *testing.T) {
	a, b := tcpPair(t)
	w := New(a)
	done := make(chan []byte)
	go func() { got, _ := io.ReadAll(b); done <- got }()
	var want []byte
	for i := 0; i < 2000; i++ {
		p := bytes.Repeat([]byte{byte(i)}, 1+i*37%40000)
		want = append(want, p...)
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if !bytes.Equal(got, want) {
		t.Fatalf("received %d bytes, want %d (equal=%v)", len(got), len(want), bytes.Equal(got, want))
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
}

// Concurrent writers never interleave inside one Write.
func TestConcurrentWritesAtomic(t *testing.T) {
	a, b := tcpPair(t)
	w := New(a)
	const writers, each, size = 4, 200, 3000
	done := make(chan []byte)
	go func() { got, _ := io.ReadAll(b); done <- got }()
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			p := bytes.Repeat([]byte{byte('a' + g)}, size)
			for i := 0; i < each; i++ {
				if _, err := w.Write(p); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	w.Close()
	got := <-done
	if len(got) != writers*each*size {
		t.Fatalf("got %d bytes, want %d", len(got), writers*each*size)
	}
	for off := 0; off < len(got); off += size {
		blk := got[off : off+size]
		if bytes.Count(blk, blk[:1]) != size {
			t.Fatalf("write at offset %d interleaved with another", off)
		}
	}
}

// A failed socket write surfaces on a later Write instead of hanging.
func TestWriteErrorSurfaces(t *testing.T) {
	a, b := tcpPair(t)
	w := New(a)
	b.Close()
	a.(*net.TCPConn).CloseWrite()
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = w.Write(make([]byte, 64<<10))
	}
	if err == nil {
		t.Fatal("writes to a closed peer never failed")
	}
	w.Close()
}
