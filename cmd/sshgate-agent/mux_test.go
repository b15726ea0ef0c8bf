package main

import (
	"bytes"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/muxproto"
)

// muxAgent runs the binary with --mux and returns the gate's end of the
// session over its stdin/stdout.
func muxAgent(t *testing.T, k *keys) (*exec.Cmd, *syncBuffer, *agentProc, *yamux.Session, io.Closer) {
	t.Helper()
	cmd := exec.Command(agentBin, k.agentArgs("--mux")...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, p := startCmd(t, cmd)
	rw := &pipeRW{r: stdout, w: stdin}
	sess, err := muxproto.Client(rw)
	if err != nil {
		t.Fatalf("mux client: %v (stderr %q)", err, stderr.String())
	}
	t.Cleanup(func() { sess.Close() })
	return cmd, stderr, p, sess, stdin
}

type pipeRW struct {
	r io.ReadCloser
	w io.WriteCloser
}

func (p *pipeRW) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeRW) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeRW) Close() error {
	p.w.Close()
	return p.r.Close()
}

// muxSSH opens a stream and an SSH client over conn (the stream, or a
// wrapper of it).
func muxSSH(t *testing.T, k *keys, conn net.Conn) *ssh.Client {
	t.Helper()
	c, chans, reqs, err := ssh.NewClientConn(conn, "agent", k.clientConfig())
	if err != nil {
		t.Fatalf("ssh over a mux stream: %v", err)
	}
	cl := ssh.NewClient(c, chans, reqs)
	t.Cleanup(func() { cl.Close() })
	return cl
}

func runOut(t *testing.T, cl *ssh.Client, cmd string) string {
	t.Helper()
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Output(cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return string(out)
}

// TestMux: the gate's streams over one --mux agent are each an SSH
// connection to it (the host key pinned, the sessions the agent's
// children), and the agent ends, stopping its sessions, when the stream
// ends.
func TestMux(t *testing.T) {
	k := newKeys(t)
	cmd, stderr, p, sess, stdin := muxAgent(t, k)
	var clients []*ssh.Client
	for range 3 {
		st, err := sess.Open()
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, muxSSH(t, k, st))
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	for i, cl := range clients {
		if out := runOut(t, cl, "echo $PPID"); strings.TrimSpace(out) != pid {
			t.Errorf("connection %d: the shell's parent is %q, want the mux agent %s", i, out, pid)
		}
	}
	// A session still running when the stream ends is stopped.
	s, err := clients[0].NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("sleep 30"); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	stdin.Close()
	if err := waitExit(t, p, 10*time.Second); err != nil {
		t.Fatalf("exit after the stream ended: %v (stderr %q)", err, stderr.String())
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("the agent took %s to exit after its stream ended", d)
	}
}

// pausable is a stream whose reads stop while paused: a connection whose
// client reads nothing.
type pausable struct {
	net.Conn
	mu     sync.Mutex
	paused bool
	cond   *sync.Cond
	n      atomic.Int64
}

func (c *pausable) Read(b []byte) (int, error) {
	c.mu.Lock()
	for c.paused {
		c.cond.Wait()
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *pausable) set(p bool) {
	c.mu.Lock()
	c.paused = p
	c.mu.Unlock()
	c.cond.Broadcast()
}

// TestMuxSlowStream: a connection whose reader stops, with the agent
// writing to it as fast as it can, does not hold back another connection
// over the same stream, new or open before; it goes on once read again.
func TestMuxSlowStream(t *testing.T) {
	k := newKeys(t)
	_, stderr, _, sess, _ := muxAgent(t, k)
	st1, err := sess.Open()
	if err != nil {
		t.Fatal(err)
	}
	slow := &pausable{Conn: st1}
	slow.cond = sync.NewCond(&slow.mu)
	cl1 := muxSSH(t, k, slow)
	st2, err := sess.Open()
	if err != nil {
		t.Fatal(err)
	}
	cl2 := muxSSH(t, k, st2)

	s, err := cl1.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("cat /dev/zero"); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	go func() {
		n, _ := io.Copy(io.Discard, out)
		got.Add(n)
	}()
	eventually(t, 10*time.Second, "data on the fast path", func() bool { return slow.n.Load() > 8<<20 })
	slow.set(true)
	// The agent fills the slow stream's window (and its SSH channel's) and
	// then waits; meanwhile the other connections are served.
	time.Sleep(500 * time.Millisecond)
	before := slow.n.Load()
	done := make(chan string, 2)
	go func() { done <- runOut(t, cl2, "echo open-before") }()
	go func() {
		st3, err := sess.Open()
		if err != nil {
			done <- err.Error()
			return
		}
		c, chans, reqs, err := ssh.NewClientConn(st3, "agent", k.clientConfig())
		if err != nil {
			done <- err.Error()
			return
		}
		cl3 := ssh.NewClient(c, chans, reqs)
		defer cl3.Close()
		s3, err := cl3.NewSession()
		if err != nil {
			done <- err.Error()
			return
		}
		defer s3.Close()
		b, err := s3.Output("echo new")
		if err != nil {
			done <- err.Error()
		}
		done <- string(b)
	}()
	want := map[string]bool{"open-before\n": true, "new\n": true}
	for range 2 {
		select {
		case o := <-done:
			if !want[o] {
				t.Errorf("other connection: %q", o)
			}
			delete(want, o)
		case <-time.After(10 * time.Second):
			t.Fatalf("another connection stalled behind the slow one (stderr %q)", stderr.String())
		}
	}
	if slow.n.Load() != before {
		t.Fatalf("the paused stream was read")
	}
	slow.set(false)
	eventually(t, 10*time.Second, "the slow connection to go on", func() bool { return slow.n.Load() > before+8<<20 })
	s.Close()
}

// TestMuxPreamble: the gate's end wants the exact preamble first.
func TestMuxPreamble(t *testing.T) {
	var rw bytes.Buffer
	rw.WriteString("SSH-2.0-x\r\n..........")
	if _, err := muxproto.Client(nopCloser{&rw}); err == nil || !strings.Contains(err.Error(), "not the mux preamble") {
		t.Fatalf("Client over a non-mux answer: %v", err)
	}
}

type nopCloser struct{ io.ReadWriter }

func (nopCloser) Close() error { return nil }
