package fdpass

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// unixPair is a connected pair of unix stream sockets.
func unixPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	b, err = l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// The descriptor arrives with the bytes of the write it was armed for,
// the byte stream is unchanged, and a claimed pipe reads what the sender
// writes.
func TestSendReceive(t *testing.T) {
	a, b := unixPair(t)
	s, r := NewSender(a), NewReceiver(b, []byte("AB"))
	r.Accept()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte("ABbefore "), bytes.Repeat([]byte("x"), 300<<10)...), " after"...)
	got := make([]byte, len(want))
	read := make(chan error, 1)
	go func() { _, err := io.ReadFull(r, got); read <- err }()
	if _, err := s.Write([]byte("before ")); err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 300<<10) // larger than one socket send
	sent, err := s.Send(pr, func() error {
		_, err := s.Write(payload)
		return err
	})
	if err != nil || !sent {
		t.Fatalf("Send: sent %v err %v", sent, err)
	}
	pr.Close()
	if _, err := s.Write([]byte(" after")); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the byte stream changed")
	}
	f, err := r.Take()
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	defer f.Close()
	if _, err := r.Take(); err == nil {
		t.Error("a second Take succeeded")
	}
	fl, _ := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if fl&unix.O_NONBLOCK != 0 {
		t.Error("the taken pipe is non-blocking")
	}
	go func() { pw.Write([]byte("hello")); pw.Close() }()
	if b, _ := io.ReadAll(f); string(b) != "hello" {
		t.Errorf("pipe read %q", b)
	}
}

// A descriptor nobody claims in time is refused by Take, and Close closes
// an unclaimed one.
func TestExpiryAndClose(t *testing.T) {
	pr, pw, _ := os.Pipe()
	defer pw.Close()
	defer pr.Close()
	if err := CheckReadPipe(pr, time.Now().Add(-Expiry-time.Second), time.Now()); err == nil {
		t.Error("an expired descriptor passed the check")
	}
	a, b := unixPair(t)
	s, r := NewSender(a), NewReceiver(b, nil)
	r.Accept()
	r2, w2, _ := os.Pipe()
	defer w2.Close()
	if _, err := s.Send(r2, func() error { _, err := s.Write([]byte("x")); return err }); err != nil {
		t.Fatal(err)
	}
	r2.Close()
	buf := make([]byte, 1)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	r.Close()
	// The write end sees no reader any more: EPIPE.
	if _, err := w2.Write([]byte("y")); !errors.Is(err, unix.EPIPE) {
		t.Errorf("write after the receiver closed: %v, want EPIPE", err)
	}
}

// A sender that never writes sends nothing: Send reports it.
func TestSendWithoutWrite(t *testing.T) {
	a, _ := unixPair(t)
	s := NewSender(a)
	pr, pw, _ := os.Pipe()
	defer pw.Close()
	defer pr.Close()
	sent, err := s.Send(pr, func() error { return nil })
	if sent || err != nil {
		t.Errorf("sent %v err %v", sent, err)
	}
	if _, err := s.Write([]byte("z")); err != nil { // not armed any more
		t.Fatal(err)
	}
}

func FuzzParseRights(f *testing.F) {
	f.Add(unix.UnixRights(3), false)
	f.Add(unix.UnixRights(3, 4, 5), false)
	f.Add(append(unix.UnixRights(7), unix.UnixCredentials(&unix.Ucred{Pid: 1, Uid: 2, Gid: 3})...), false)
	f.Add([]byte{}, true)
	f.Add([]byte{1, 2, 3}, false)
	// A rights message shorter than one descriptor (syscall.ParseUnixRights
	// panics on it).
	f.Add([]byte("\x13\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00000"), false)
	f.Fuzz(func(t *testing.T, oob []byte, truncated bool) {
		fds, err := ParseRights(oob, truncated)
		if truncated && err == nil {
			t.Fatal("truncated control data accepted")
		}
		if len(fds) > len(oob)/4 {
			t.Fatalf("%d descriptors from %d bytes", len(fds), len(oob))
		}
		for _, fd := range fds {
			if fd < 0 {
				t.Fatalf("descriptor %d", fd)
			}
		}
		// What the kernel writes parses back exactly.
		if len(fds) > 0 && err == nil {
			again, err := ParseRights(unix.UnixRights(fds...), false)
			if err != nil || len(again) != len(fds) {
				t.Fatalf("round trip: %v %v", again, err)
			}
		}
	})
}

// A descriptor whose claim never came is closed when the next arrives, and
// the next is the one held.
func TestUnclaimedReplaced(t *testing.T) {
	a, b := unixPair(t)
	s, r := NewSender(a), NewReceiver(b, nil)
	r.Accept()
	r1, w1, _ := os.Pipe()
	r2, w2, _ := os.Pipe()
	defer w2.Close()
	buf := make([]byte, 1)
	for _, p := range []*os.File{r1, r2} {
		if _, err := s.Send(p, func() error { _, err := s.Write([]byte("x")); return err }); err != nil {
			t.Fatal(err)
		}
		p.Close()
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	// The first pipe has no reader left: EPIPE.
	if _, err := w1.Write([]byte("y")); !errors.Is(err, unix.EPIPE) {
		t.Errorf("write to the replaced pipe: %v, want EPIPE", err)
	}
	w1.Close()
	f, err := r.Take()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	go func() { w2.Write([]byte("second")); w2.Close() }()
	if got, _ := io.ReadAll(f); string(got) != "second" {
		t.Errorf("held %q, want the second pipe", got)
	}
}

// A connection reset (the peer closed with bytes of ours unread) is an
// error with no bytes, never a negative count: x/crypto reads the agent's
// connection through a bufio.Reader, which panics on one (found by
// TestDockerStdinPipe, whose killed clients crashed the agent).
func TestReadResetIsNotNegative(t *testing.T) {
	a, b := unixPair(t)
	r := NewReceiver(b, nil)
	r.Accept()
	if _, err := b.Write([]byte("unread by the peer")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	a.Close() // with those bytes in its receive queue: a reset for b
	buf := make([]byte, 64)
	for i := 0; i < 10; i++ {
		n, err := r.Read(buf)
		if n < 0 {
			t.Fatalf("Read after a reset: n = %d (err %v)", n, err)
		}
		if err != nil {
			return
		}
	}
	t.Fatal("no error after the peer's close")
}
