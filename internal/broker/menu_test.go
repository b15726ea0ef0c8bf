package broker

import (
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// pipeChannel is an ssh.Channel whose Read is the read end of a pipe.
type pipeChannel struct {
	ssh.Channel
	r *io.PipeReader
}

func (p pipeChannel) Read(b []byte) (int, error) { return p.r.Read(b) }

// Keys typed while one reader (the menu) stops and the next (a session)
// starts all reach the next reader, in order, none eaten.
func TestKeyPumpHandsOverWithoutLoss(t *testing.T) {
	r, w := io.Pipe()
	p := newKeyPump(pipeChannel{r: r})
	defer p.stop()
	menuIn := p.reader()
	go w.Write([]byte("2\r"))
	buf := make([]byte, 1)
	if n, err := menuIn.Read(buf); n != 1 || err != nil || buf[0] != '2' {
		t.Fatalf("first read: %d %v %q", n, err, buf[:n])
	}
	// The menu chose: it stops with "\r" unread and one Read blocked.
	blocked := make(chan struct{})
	go func() {
		defer close(blocked)
		b := make([]byte, 16)
		for {
			if _, err := menuIn.Read(b); err != nil {
				return
			}
		}
	}()
	menuIn.Wait()
	<-blocked
	if n, err := menuIn.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("a stopped reader read %d, %v", n, err)
	}
	sessIn := p.reader()
	go w.Write([]byte("ls\r"))
	got := ""
	b := make([]byte, 16)
	deadline := time.Now().Add(10 * time.Second)
	for got != "\rls\r" && time.Now().Before(deadline) {
		n, err := sessIn.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		got += string(b[:n])
	}
	if got != "\rls\r" {
		t.Fatalf("the session read %q, want %q", got, "\rls\r")
	}
	// The channel ends: readers see EOF, the pump's goroutine ends.
	w.Close()
	if _, err := sessIn.Read(b); err != io.EOF {
		t.Fatalf("after the channel ended: %v", err)
	}
	<-p.done
}

func TestDumbTerm(t *testing.T) {
	for term, want := range map[string]bool{"": true, "dumb": true, "unknown": true, "vt52x": false, "xterm-256color": false,
		"screen": false, "tmux-256color": false, "linux": false, "putty": false, "st-256color": false, "st": false, "foo": true} {
		if got := dumbTerm(term); got != want {
			t.Errorf("dumbTerm(%q) = %v, want %v", term, got, want)
		}
	}
}

// The router hands requests to the session while one runs, ends its stream
// when the session ends (even if nobody reads it any more), keeps the pty
// size throughout, and stops when the channel does.
func TestReqRouter(t *testing.T) {
	reqs := make(chan *ssh.Request)
	rr := newReqRouter(reqs, ptyReq{Term: "xterm", Cols: 80, Rows: 24})
	resized := make(chan [2]int, 1)
	rr.setResize(func(c, r int) { resized <- [2]int{c, r} })
	reqs <- &ssh.Request{Type: "window-change", Payload: ssh.Marshal(winChange{Cols: 100, Rows: 30})}
	if got := <-resized; got != [2]int{100, 30} {
		t.Fatalf("menu resize %v", got)
	}
	rr.setResize(nil)
	sess, ok := rr.startSession()
	if !ok {
		t.Fatal("startSession refused")
	}
	go func() {
		reqs <- &ssh.Request{Type: "window-change", Payload: ssh.Marshal(winChange{Cols: 90, Rows: 20})}
	}()
	if r := <-sess; r.Type != "window-change" {
		t.Fatalf("session got %q", r.Type)
	}
	if p := rr.ptyNow(); p.Cols != 90 || p.Rows != 20 {
		t.Fatalf("pty after a resize in the session: %+v", p)
	}
	// A request the relay never takes, then the session ends: no hang.
	sent := make(chan struct{})
	go func() { reqs <- &ssh.Request{Type: "env"}; close(sent) }()
	<-sent
	rr.endSession()
	for range sess { // closed by the router
	}
	sess2, ok := rr.startSession()
	if !ok {
		t.Fatal("second startSession refused")
	}
	close(reqs) // the user's channel is gone
	for range sess2 {
	}
	<-rr.gone
	if _, ok := rr.startSession(); ok {
		t.Fatal("startSession after the channel ended")
	}
}

func TestLineReader(t *testing.T) {
	for in, want := range map[string]string{"ssh-ed25519 AAAA x\r": "ssh-ed25519 AAAA x", "abc\x04def": "abc", "abc": "abc", "\n": ""} {
		got, err := io.ReadAll(stdinOf(strings.NewReader(in), &setup{pty: &ptyReq{}}))
		if err != nil || string(got) != want {
			t.Errorf("pty stdin %q: %q, %v; want %q", in, got, err, want)
		}
		got, _ = io.ReadAll(stdinOf(strings.NewReader(in), &setup{}))
		if string(got) != in {
			t.Errorf("plain stdin %q: %q", in, got)
		}
	}
}
