//go:build linux

package quickack

import (
	"io"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// pair is a loopback TCP connection: the accepted end and the dialled one,
// the dialled one with Nagle's algorithm on, as OpenSSH's client has it.
func pair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	cc := c.(*net.TCPConn)
	if err := cc.SetNoDelay(false); err != nil {
		t.Fatal(err)
	}
	return s.(*net.TCPConn), cc
}

// quickAckMode is the kernel's answer for the socket under c: 1 when it
// acknowledges at once, 0 in its delayed-ACK ("pingpong") mode.
func quickAckMode(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// exchange plays the handshake's shape: the client writes, the server reads
// through r and answers at once, a few times, then the client writes once
// more and the server reads it.
func exchange(t *testing.T, r io.Reader, server, client *net.TCPConn) {
	t.Helper()
	b := make([]byte, 16)
	for i := 0; i < 4; i++ {
		if _, err := client.Write([]byte("kexinit")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r, b[:7]); err != nil {
			t.Fatal(err)
		}
		if _, err := server.Write([]byte("reply")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, b[:5]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Write([]byte("newkeys")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, b[:7]); err != nil {
		t.Fatal(err)
	}
}

// A server that answers each read at once is taken by Linux for an
// interactive one and delays its ACKs (the control); read through Wrap it
// stays in quick-ACK mode, so a client that holds its next small write
// for our ACK (Nagle) gets the ACK now.
func TestWrapKeepsQuickAck(t *testing.T) {
	s, c := pair(t)
	exchange(t, s, s, c)
	if quickAckMode(t, s) != 0 {
		t.Skip("this kernel does not enter delayed-ACK mode in the control exchange; nothing to compare")
	}

	s, c = pair(t)
	w := Wrap(s)
	if _, ok := w.(*Conn); !ok {
		t.Fatalf("Wrap(*net.TCPConn) = %T, want *Conn", w)
	}
	exchange(t, w, s, c)
	if got := quickAckMode(t, s); got != 1 {
		t.Fatalf("TCP_QUICKACK after reads through Wrap = %d, want 1", got)
	}
}

// After Reads reads the wrapper stops asking: a streaming connection pays
// no syscall more per read.
func TestWrapStopsAfterReads(t *testing.T) {
	s, c := pair(t)
	w := Wrap(s).(*Conn)
	go func() {
		for i := 0; i < Reads+8; i++ {
			if _, err := c.Write([]byte{byte(i)}); err != nil {
				return
			}
		}
	}()
	b := make([]byte, 1)
	for i := 0; i < Reads+8; i++ {
		if _, err := io.ReadFull(w, b); err != nil {
			t.Fatal(err)
		}
		if b[0] != byte(i) {
			t.Fatalf("read %d: got byte %d", i, b[0])
		}
	}
	if left := w.left.Load(); left > 0 {
		t.Fatalf("quick ACK reads left after %d reads: %d, want none", Reads+8, left)
	}
}

// A connection that is not TCP comes back as it was.
func TestWrapLeavesOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(net.Pipe) = %T, want the pipe itself", got)
	}
}
