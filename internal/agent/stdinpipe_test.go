package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/sshgate/sshgate/internal/fdpass"
)

// The stdin pipe (fdpass, StdinPipeRequest) against a real agent over a
// real unix socket, the test acting as the gate with an x/crypto client:
// a passed pipe becomes the process's stdin; anything else is refused and
// closed.

// rawSender is a gate side that can attach any control message to its next
// write (the real one, fdpass.Sender, only ever sends one descriptor).
type rawSender struct {
	*net.UnixConn
	mu  sync.Mutex
	oob []byte
}

func (s *rawSender) arm(oob []byte) {
	s.mu.Lock()
	s.oob = oob
	s.mu.Unlock()
}

func (s *rawSender) Write(p []byte) (int, error) {
	s.mu.Lock()
	oob := s.oob
	s.oob = nil
	s.mu.Unlock()
	if oob == nil {
		return s.UnixConn.Write(p)
	}
	n, _, err := s.UnixConn.WriteMsgUnix(p, oob, nil)
	if err == nil && n < len(p) {
		m, err := s.UnixConn.Write(p[n:])
		return n + m, err
	}
	return n, err
}

// pipeAgent serves f's agent on one unix socket connection and returns the
// gate's raw end, and a channel that yields Serve's error.
func pipeAgent(t *testing.T, f *fixture) (*net.UnixConn, <-chan error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.srv.ServeUnix(a, nil) }()
	t.Cleanup(func() { c.Close() })
	return c, done
}

func (f *fixture) login(t *testing.T, conn net.Conn) *ssh.Client {
	t.Helper()
	cfg := &ssh.ClientConfig{User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(f.user.signer)},
		HostKeyCallback: ssh.FixedHostKey(f.hostPub), Timeout: 10 * time.Second}
	sc, chans, reqs, err := ssh.NewClientConn(conn, "agent", cfg)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	c := ssh.NewClient(sc, chans, reqs)
	t.Cleanup(func() { c.Close() })
	return c
}

// holders counts this process's descriptors that refer to target (a path,
// or "pipe:[inode]").
func holders(t *testing.T, target string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == target {
			n++
		}
	}
	return n
}

func pipeName(t *testing.T, f *os.File) string {
	t.Helper()
	l, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// askPipe sends StdinPipeRequest on a new session and reports the answer.
func askPipe(t *testing.T, c *ssh.Client) (*ssh.Session, bool) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	ok, err := s.SendRequest(StdinPipeRequest, true, nil)
	if err != nil {
		t.Fatalf("stdin pipe request: %v", err)
	}
	return s, ok
}

func TestStdinPipeCarriesStdin(t *testing.T) {
	f := newFixture(t, "", nil)
	raw, _ := pipeAgent(t, f)
	snd := fdpass.NewSender(raw)
	c := f.login(t, snd)

	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	name := pipeName(t, w)
	var ok bool
	sent, err := snd.Send(r, func() error {
		var err error
		ok, err = s.SendRequest(StdinPipeRequest, true, nil)
		return err
	})
	r.Close()
	if err != nil || !sent || !ok {
		t.Fatalf("stdin pipe: sent %v ok %v err %v", sent, ok, err)
	}
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	if err := s.Start("sha256sum; echo err >&2; exit 3"); err != nil {
		t.Fatal(err)
	}
	// 8 MiB, more than any pipe or window holds; EOF by closing the pipe.
	h := sha256.New()
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<19)
	h.Write(data)
	if _, err := w.Write(data); err != nil {
		t.Fatalf("write the pipe: %v", err)
	}
	w.Close()
	err = s.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Fatalf("wait: %v, want exit 3", err)
	}
	if got := strings.Fields(out.String()); len(got) == 0 || got[0] != hex.EncodeToString(h.Sum(nil)) || errb.String() != "err\n" {
		t.Errorf("stdout %q stderr %q, want the data's sha256 and err", out.String(), errb.String())
	}
	// Neither side holds the pipe any more.
	eventually(t, 5*time.Second, "the pipe closed everywhere", func() bool { return holders(t, name) == 0 })
}

func TestStdinPipeRefused(t *testing.T) {
	f := newFixture(t, "", nil)
	file := filepath.Join(t.TempDir(), "regular")
	if err := os.WriteFile(file, []byte("not a pipe\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("nothing passed", func(t *testing.T) {
		raw, _ := pipeAgent(t, f)
		c := f.login(t, raw)
		if _, ok := askPipe(t, c); ok {
			t.Fatal("a stdin pipe request with no descriptor was accepted")
		}
	})

	t.Run("replayed", func(t *testing.T) {
		raw, _ := pipeAgent(t, f)
		snd := fdpass.NewSender(raw)
		c := f.login(t, snd)
		r, w, _ := os.Pipe()
		defer w.Close()
		s1, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		if _, err := snd.Send(r, func() error {
			var err error
			ok, err = s1.SendRequest(StdinPipeRequest, true, nil)
			return err
		}); err != nil || !ok {
			t.Fatalf("first claim: ok %v err %v", ok, err)
		}
		r.Close()
		// The same request again, in the same session and in another: the
		// descriptor was claimed once.
		if ok, _ := s1.SendRequest(StdinPipeRequest, true, nil); ok {
			t.Error("a second claim in the same session was accepted")
		}
		if _, ok := askPipe(t, c); ok {
			t.Error("a claim in another session was accepted")
		}
	})

	// Descriptors that are not a pipe's read end: each is refused and
	// closed by the agent.
	sock1, sock2, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer sock2.Close()
	wr, ww, _ := os.Pipe()
	defer wr.Close()
	for _, tc := range []struct {
		name string
		open func() (*os.File, error)
	}{
		{"regular file", func() (*os.File, error) { return os.Open(file) }},
		{"socket", func() (*os.File, error) { return sock1, nil }},
		{"pipe write end", func() (*os.File, error) { return ww, nil }},
		{"pipe read end opened read-write", func() (*os.File, error) {
			return os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(wr.Fd())), os.O_RDWR, 0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, err := tc.open()
			if err != nil {
				t.Fatal(err)
			}
			target := pipeName(t, fd)
			before := holders(t, target)
			raw, _ := pipeAgent(t, f)
			snd := fdpass.NewSender(raw)
			c := f.login(t, snd)
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			var ok bool
			sent, err := snd.Send(fd, func() error {
				var err error
				ok, err = s.SendRequest(StdinPipeRequest, true, nil)
				return err
			})
			if err != nil || !sent {
				t.Fatalf("send: sent %v err %v", sent, err)
			}
			if ok {
				t.Fatalf("a %s was accepted as stdin", tc.name)
			}
			fd.Close()
			eventually(t, 5*time.Second, "the agent closed the refused descriptor", func() bool {
				return holders(t, target) == before-1
			})
			// The session still serves over the channel.
			s.Stdin = strings.NewReader("abc")
			out, err := s.Output("cat")
			if err != nil || string(out) != "abc" {
				t.Errorf("after the refusal: %q %v", out, err)
			}
		})
	}

	t.Run("before the handshake", func(t *testing.T) {
		r, w, _ := os.Pipe()
		defer w.Close()
		name := pipeName(t, r)
		raw, done := pipeAgent(t, f)
		rs := &rawSender{UnixConn: raw}
		rs.arm(unix.UnixRights(int(r.Fd())))
		cfg := &ssh.ClientConfig{User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(f.user.signer)},
			HostKeyCallback: ssh.FixedHostKey(f.hostPub), Timeout: 10 * time.Second}
		if sc, _, _, err := ssh.NewClientConn(rs, "agent", cfg); err == nil {
			sc.Close()
			t.Fatal("the login succeeded with a descriptor sent before the handshake")
		}
		r.Close()
		if err := <-done; err == nil || !strings.Contains(err.Error(), "descriptor refused") {
			t.Errorf("Serve: %v, want the descriptor refused", err)
		}
		// Left: the test's write end (both ends read as pipe:[inode]).
		eventually(t, 5*time.Second, "the agent closed it", func() bool { return holders(t, name) == 1 })
	})

	t.Run("two in one message", func(t *testing.T) {
		r1, w1, _ := os.Pipe()
		r2, w2, _ := os.Pipe()
		defer w1.Close()
		defer w2.Close()
		n1, n2 := pipeName(t, r1), pipeName(t, r2)
		raw, done := pipeAgent(t, f)
		rs := &rawSender{UnixConn: raw}
		c := f.login(t, rs)
		rs.arm(unix.UnixRights(int(r1.Fd()), int(r2.Fd())))
		// The connection is broken off as the message arrives: the session
		// open or the request fails.
		if s, err := c.NewSession(); err == nil {
			if ok, _ := s.SendRequest(StdinPipeRequest, true, nil); ok {
				t.Fatal("two descriptors in one message were accepted")
			}
		}
		r1.Close()
		r2.Close()
		select {
		case <-done: // the agent broke the connection off
		case <-time.After(5 * time.Second):
			t.Error("the agent still serves the connection")
		}
		eventually(t, 5*time.Second, "the agent closed both", func() bool { return holders(t, n1)+holders(t, n2) == 2 })
	})

	t.Run("after the session started", func(t *testing.T) {
		raw, _ := pipeAgent(t, f)
		snd := fdpass.NewSender(raw)
		c := f.login(t, snd)
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		stdin, _ := s.StdinPipe()
		if err := s.Start("cat >/dev/null"); err != nil {
			t.Fatal(err)
		}
		r, w, _ := os.Pipe()
		defer w.Close()
		var ok bool
		_, _ = snd.Send(r, func() error {
			var err error
			ok, err = s.SendRequest(StdinPipeRequest, true, nil)
			return err
		})
		r.Close()
		if ok {
			t.Error("a stdin pipe was accepted after the process started")
		}
		stdin.Close()
		_ = s.Wait()
	})
}

func socketPair() (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "s0"), os.NewFile(uintptr(fds[1]), "s1"), nil
}

var _ io.Writer = (*rawSender)(nil)
