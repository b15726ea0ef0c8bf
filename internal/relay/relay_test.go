package relay

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// pair is a client connection and the server side's new channels, over
// loopback TCP with x/crypto on both ends.
type pair struct {
	client ssh.Conn
	chans  <-chan ssh.NewChannel
}

func newPair(t *testing.T) pair {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	scfg := &ssh.ServerConfig{NoClientAuth: true}
	scfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type srv struct {
		chans <-chan ssh.NewChannel
		err   error
	}
	done := make(chan srv, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			done <- srv{err: err}
			return
		}
		sc, chans, reqs, err := ssh.NewServerConn(nc, scfg)
		if err != nil {
			done <- srv{err: err}
			return
		}
		go ssh.DiscardRequests(reqs)
		t.Cleanup(func() { sc.Close() })
		done <- srv{chans: chans}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc, _, creqs, err := ssh.NewClientConn(nc, "x", &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.FixedHostKey(signer.PublicKey())})
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(creqs)
	t.Cleanup(func() { cc.Close() })
	s := <-done
	if s.err != nil {
		t.Fatal(s.err)
	}
	return pair{client: cc, chans: s.chans}
}

// relayed sets up user -> [down | relay | up] -> target and returns the
// user's channel, the target's channel and the relay's result.
func relayed(t *testing.T, session bool, filter Filter, hook func(ssh.Channel, Result)) (user ssh.Channel, userReqs <-chan *ssh.Request, tgt ssh.Channel, tgtReqs <-chan *ssh.Request, res <-chan Result) {
	t.Helper()
	return relayedCounted(t, session, filter, hook, nil)
}

// relayedCounted is relayed with the relay's Counters (and Tap) given.
func relayedCounted(t *testing.T, session bool, filter Filter, hook func(ssh.Channel, Result), c *Counters) (user ssh.Channel, userReqs <-chan *ssh.Request, tgt ssh.Channel, tgtReqs <-chan *ssh.Request, res <-chan Result) {
	t.Helper()
	front, back := newPair(t), newPair(t)
	out := make(chan Result, 1)
	type opened struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
	}
	got := make(chan opened, 1)
	go func() {
		nc := <-front.chans
		down, downReqs, err := nc.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		up, upReqs, err := back.client.OpenChannel("session", nil)
		if err != nil {
			t.Error(err)
			return
		}
		var hooks []func(Result)
		if hook != nil {
			hooks = append(hooks, func(r Result) { hook(down, r) })
		}
		if session {
			out <- Session(down, downReqs, up, upReqs, filter, c, hooks...)
		} else {
			out <- Channels(down, downReqs, up, upReqs, filter, c, hooks...)
		}
	}()
	go func() {
		nc := <-back.chans
		ch, reqs, err := nc.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		got <- opened{ch, reqs}
	}()
	user, userReqs, err := front.client.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	o := <-got
	return user, userReqs, o.ch, o.reqs, out
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	done := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	select {
	case b := <-done:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("read did not end")
		return nil
	}
}

// Each direction of a forwarded channel half-closes on its own: the target
// still answers after the user's EOF, and bytes arrive intact both ways.
func TestForwardedHalfClose(t *testing.T) {
	user, _, tgt, _, res := relayed(t, false, nil, nil)
	up := bytes.Repeat([]byte("u"), 3<<20)
	go func() { user.Write(up); user.CloseWrite() }()
	if got := readAll(t, tgt); !bytes.Equal(got, up) {
		t.Fatalf("target got %d bytes, want %d", len(got), len(up))
	}
	// The user's EOF arrived; the target may still talk.
	down := bytes.Repeat([]byte("d"), 1<<20)
	go func() { tgt.Write(down); tgt.Stderr().Write([]byte("err")); tgt.CloseWrite(); tgt.Close() }()
	stderr := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(user.Stderr()); stderr <- b }()
	if got := readAll(t, user); !bytes.Equal(got, down) {
		t.Fatalf("user got %d bytes, want %d", len(got), len(down))
	}
	if got := <-stderr; string(got) != "err" {
		t.Fatalf("user stderr %q", got)
	}
	select {
	case <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not end after the target closed")
	}
}

// Requests pass both ways with their replies; the filter refuses.
func TestRequests(t *testing.T) {
	filter := func(r *ssh.Request) bool { return r.Type != "env" }
	user, userReqs, tgt, tgtReqs, _ := relayed(t, true, filter, nil)
	go func() {
		for r := range tgtReqs {
			r.Reply(r.Type == "window-change", nil)
		}
	}()
	if ok, err := user.SendRequest("window-change", true, make([]byte, 16)); err != nil || !ok {
		t.Fatalf("window-change: %v %v, want the target's yes", ok, err)
	}
	if ok, err := user.SendRequest("signal", true, ssh.Marshal(struct{ S string }{"TERM"})); err != nil || ok {
		t.Fatalf("signal: %v %v, want the target's no", ok, err)
	}
	if ok, err := user.SendRequest("env", true, ssh.Marshal(struct{ K, V string }{"LD_PRELOAD", "x"})); err != nil || ok {
		t.Fatalf("filtered env: %v %v, want no", ok, err)
	}
	go func() {
		for r := range userReqs {
			r.Reply(r.Type == "keepalive@openssh.com", nil)
		}
	}()
	if ok, err := tgt.SendRequest("keepalive@openssh.com", true, nil); err != nil || !ok {
		t.Fatalf("target's keepalive: %v %v, want the user's yes", ok, err)
	}
}

// A session delivers all output, then the exit status, and closes.
func TestSessionExitStatus(t *testing.T) {
	user, userReqs, tgt, _, res := relayed(t, true, nil, nil)
	statuses := make(chan uint32, 2)
	go func() {
		for r := range userReqs {
			if r.Type == "exit-status" {
				statuses <- uint32(r.Payload[3])
			}
		}
		close(statuses)
	}()
	out := bytes.Repeat([]byte("o"), 1<<20)
	go func() {
		tgt.Write(out)
		tgt.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{7}))
		tgt.CloseWrite()
		tgt.Close()
	}()
	if got := readAll(t, user); !bytes.Equal(got, out) {
		t.Fatalf("user got %d bytes, want %d", len(got), len(out))
	}
	if s, ok := <-statuses; !ok || s != 7 {
		t.Fatalf("exit status %d (%v), want 7", s, ok)
	}
	r := <-res
	if r.ExitStatus == nil || *r.ExitStatus != 7 {
		t.Fatalf("result %+v, want exit status 7", r)
	}
}

// A session whose target vanishes without an exit status gets the hook's
// last words on stderr before the channel ends.
func TestSessionLastWords(t *testing.T) {
	hook := func(down ssh.Channel, r Result) {
		if r.ExitStatus == nil {
			io.WriteString(down.Stderr(), "target lost\n")
		}
	}
	user, _, tgt, _, _ := relayed(t, true, nil, hook)
	stderr := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(user.Stderr()); stderr <- b }()
	tgt.Close()
	readAll(t, user)
	if got := <-stderr; string(got) != "target lost\n" {
		t.Fatalf("stderr %q, want the hook's line", got)
	}
}

// tapRecorder keeps what a Tap saw, per stream.
type tapRecorder struct {
	mu  sync.Mutex
	got [3]bytes.Buffer
}

func (r *tapRecorder) Data(s Stream, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[s].Write(p)
}

func (r *tapRecorder) stream(s Stream) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[s].String()
}

// A Tap sees every byte of each stream, in order, and the counters agree.
func TestTapSeesEveryStream(t *testing.T) {
	rec := &tapRecorder{}
	c := &Counters{Tap: rec}
	user, _, tgt, _, res := relayedCounted(t, true, nil, nil, c)
	in := string(bytes.Repeat([]byte("i"), 200<<10)) + "end"
	out := bytes.Repeat([]byte("o"), 300<<10)
	go func() { user.Write([]byte(in)); user.CloseWrite() }()
	if got := readAll(t, tgt); string(got) != in {
		t.Fatalf("target got %d bytes, want %d", len(got), len(in))
	}
	go func() {
		tgt.Write(out)
		tgt.Stderr().Write([]byte("warn"))
		tgt.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{0}))
		tgt.Close()
	}()
	if got := readAll(t, user); !bytes.Equal(got, out) {
		t.Fatalf("user got %d bytes, want %d", len(got), len(out))
	}
	<-res
	if got := rec.stream(ToTarget); got != in {
		t.Errorf("tap ToTarget: %d bytes, want %d", len(got), len(in))
	}
	if got := rec.stream(ToUser); got != string(out) {
		t.Errorf("tap ToUser: %d bytes, want %d", len(got), len(out))
	}
	if got := rec.stream(ToUserStderr); got != "warn" {
		t.Errorf("tap ToUserStderr: %q, want %q", got, "warn")
	}
	if c.In.Load() != int64(len(in)) || c.Out.Load() != int64(len(out)+4) {
		t.Errorf("counters in=%d out=%d, want %d %d", c.In.Load(), c.Out.Load(), len(in), len(out)+4)
	}
}

// While one side's answer to a request is due, the relay still serves the
// other side's requests: a target that sends many requests before it
// answers the user's (more than x/crypto buffers per channel) is not stuck
// behind a relay waiting for that answer.
func TestRequestsWhileAnAnswerIsDue(t *testing.T) {
	const n = 40
	user, userReqs, tgt, tgtReqs, _ := relayed(t, true, nil, nil)
	got := make(chan string, n+1)
	go func() {
		for r := range userReqs {
			got <- r.Type
		}
	}()
	go func() {
		r := <-tgtReqs
		for i := 0; i < n; i++ {
			if _, err := tgt.SendRequest("notice", false, nil); err != nil {
				t.Error(err)
				return
			}
		}
		r.Reply(true, nil)
		ssh.DiscardRequests(tgtReqs)
	}()
	answered := make(chan error, 1)
	go func() {
		ok, err := user.SendRequest("ask", true, nil)
		if err == nil && !ok {
			err = io.ErrUnexpectedEOF
		}
		answered <- err
	}()
	for i := 0; i < n; i++ {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("the user got %d of the target's %d requests", i, n)
		}
	}
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("the user's request: %v, want the target's yes", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the user's request was not answered")
	}
}
