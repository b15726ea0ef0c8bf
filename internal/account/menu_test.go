package account

import (
	"io"
	"slices"
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
// starts are neither lost nor duplicated: what the menu consumed before it
// stopped, then what the session reads, is exactly what was typed, in order,
// wherever the stop falls (a stopped reader hands back what it held).
func TestKeyPumpHandsOverWithoutLoss(t *testing.T) {
	for i := 0; i < 50; i++ {
		r, w := io.Pipe()
		p := newKeyPump(pipeChannel{r: r})
		menuIn := p.reader()
		var eaten []byte
		blocked := make(chan struct{})
		go func() { // the menu reads a key at a time until it is stopped
			defer close(blocked)
			b := make([]byte, 1)
			for {
				n, err := menuIn.Read(b)
				eaten = append(eaten, b[:n]...)
				if err != nil {
					return
				}
			}
		}()
		wrote := make(chan struct{})
		go func() { w.Write([]byte("2\r")); close(wrote) }() // races with the stop
		if i%2 == 0 {
			<-wrote // the pump holds the keys (or the menu has some) before the stop
		}
		menuIn.Wait()
		<-blocked
		if n, err := menuIn.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("a stopped reader read %d, %v", n, err)
		}
		<-wrote
		sessIn := p.reader()
		go w.Write([]byte("ls\r"))
		want := "2\rls\r"
		got := make(chan string, 1)
		go func() {
			s := string(eaten)
			b := make([]byte, 16)
			for len(s) < len(want) {
				n, err := sessIn.Read(b)
				if err != nil {
					break
				}
				s += string(b[:n])
			}
			got <- s
		}()
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("run %d: menu then session read %q, want %q", i, s, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: keys lost: the menu read %q and the session waits for the rest", i, eaten)
		}
		// The channel ends: readers see EOF, the pump's goroutine ends.
		w.Close()
		if _, err := sessIn.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after the channel ended: %v", err)
		}
		<-p.done
		p.stop()
	}
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
	rr := newReqRouter(reqs, PtyReq{Term: "xterm", Cols: 80, Rows: 24})
	resized := make(chan [2]int, 1)
	rr.setResize(func(c, r int) { resized <- [2]int{c, r} })
	reqs <- &ssh.Request{Type: "window-change", Payload: ssh.Marshal(WinChange{Cols: 100, Rows: 30})}
	if got := <-resized; got != [2]int{100, 30} {
		t.Fatalf("menu resize %v", got)
	}
	rr.setResize(nil)
	sess, ok := rr.startSession()
	if !ok {
		t.Fatal("startSession refused")
	}
	go func() {
		reqs <- &ssh.Request{Type: "window-change", Payload: ssh.Marshal(WinChange{Cols: 90, Rows: 20})}
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
		got, err := io.ReadAll(stdinOf(strings.NewReader(in), &Setup{PTY: &PtyReq{}}))
		if err != nil || string(got) != want {
			t.Errorf("pty stdin %q: %q, %v; want %q", in, got, err, want)
		}
		got, _ = io.ReadAll(stdinOf(strings.NewReader(in), &Setup{}))
		if string(got) != in {
			t.Errorf("plain stdin %q: %q", in, got)
		}
	}
}

func TestMOTDLines(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"\n", nil},
		{"Welcome\n", []string{"Welcome"}},
		{"a\tb\r\n\x1b[2Jc\x07\n", []string{"a b", "[2Jc"}},
		{"caf\u00e9 \u2603\n\xff\x9b", []string{"caf\u00e9 \u2603", ""}},
		{strings.Repeat("x\n", 30), strings.Split(strings.TrimSuffix(strings.Repeat("x\n", 20), "\n"), "\n")},
		{strings.Repeat("y", 300), []string{strings.Repeat("y", 200)}},
	} {
		if got := motdLines(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("motdLines(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
