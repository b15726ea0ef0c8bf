package sshd

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
)

func testServer(t *testing.T, limits Limits) (*Server, string) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if string(pw) == "right" {
				return loggedIn(c), nil
			}
			return nil, errors.New("denied")
		},
	}
	cfg.AddHostKey(signer)
	h := func(ctx context.Context, c *Conn) {
		go ssh.DiscardRequests(c.Reqs)
		for nc := range c.Chans {
			nc.Reject(ssh.Prohibited, "test")
		}
	}
	s := New(cfg, limits, nil, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, ln.Addr().String()
}

func login(addr, pw string) error {
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}) // test server with a throwaway key
	if err != nil {
		return err
	}
	return c.Close()
}

// waitClosed reads from c until the server closes it, or fails after d.
func waitClosed(t *testing.T, c net.Conn, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %s", d)
	}
	return time.Since(start)
}

func TestLoginGraceClosesSilentClients(t *testing.T) {
	// Generous enough for a real login on a loaded 2-core machine.
	const grace = 2 * time.Second
	_, addr := testServer(t, Limits{LoginGrace: grace, MaxUnauthenticated: 10, MaxUnauthPerSource: 10})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("SSH-2.0-slow\r\n")) // then nothing
	if took := waitClosed(t, c, 5*grace); took < grace-100*time.Millisecond {
		t.Fatalf("closed after %s, before the grace period", took)
	}
	if err := login(addr, "right"); err != nil {
		t.Fatalf("a real login after the grace test failed: %v", err)
	}
}

// A source with its whole share of connections still authenticating gets
// room for a new one: the oldest silent one of its own goes (else its
// oldest), so idle connections from one address keep no user at that
// address out. Other sources are not touched.
func TestPerSourceCap(t *testing.T) {
	_, addr := testServer(t, Limits{LoginGrace: 20 * time.Second, MaxUnauthenticated: 50, MaxUnauthPerSource: 3})
	// Another source's silent connection, which must survive all of it.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	other, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var held []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// The first two talk (a version line each); the third stays silent. The
	// server's version line on each says the server counts it.
	for i, c := range held {
		if i < 2 {
			talk(t, c)
			continue
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 8)); err != nil {
			t.Fatalf("held connection got no server version: %v", err)
		}
	}
	// A real user from the same address gets in at the first try: the silent
	// one makes room.
	if err := login(addr, "right"); err != nil {
		t.Fatalf("user locked out by idle connections from its address: %v", err)
	}
	waitClosed(t, held[2], 5*time.Second)
	// With only talking ones left, the oldest of them makes room.
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	talk(t, third)
	if err := login(addr, "right"); err != nil {
		t.Fatalf("user locked out by stalled connections from its address: %v", err)
	}
	waitClosed(t, held[0], 5*time.Second)
	other.Write([]byte("SSH-2.0-other\r\n"))
	buf := make([]byte, 8)
	other.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(other, buf); err != nil || string(buf) != "SSH-2.0-" {
		t.Fatalf("another source's connection was touched: %q %v", buf, err)
	}
}

func TestAuthenticatedConnectionsDoNotCount(t *testing.T) {
	_, addr := testServer(t, Limits{LoginGrace: 5 * time.Second, MaxUnauthenticated: 2, MaxUnauthPerSource: 2})
	var clients []*ssh.Client
	for i := 0; i < 5; i++ {
		c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.Password("right")},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		c.Close()
	}
}

func TestShutdownRefusesNewConnections(t *testing.T) {
	s, addr := testServer(t, Limits{LoginGrace: 5 * time.Second, MaxUnauthenticated: 10, MaxUnauthPerSource: 10})
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.Password("right")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		unauth := s.unauth
		s.mu.Unlock()
		if unauth == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server never counted the connection as authenticated")
		}
	}
	done := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a live session = %v, want deadline exceeded after the grace", err)
	}
	if err := c.Wait(); err == nil {
		t.Fatal("live connection was not closed after the shutdown grace")
	}
	if err := login(addr, "right"); err == nil {
		t.Fatal("login succeeded after shutdown")
	}
}

// loggedIn is what an authentication callback returns on success: the typed
// session, carrying the connection id the server minted (read from the
// metadata it hands the callback).
func loggedIn(c ssh.ConnMetadata) *ssh.Permissions {
	return &ssh.Permissions{ExtraData: map[any]any{gate.SessionKey{}: &gate.Session{
		ConnID: gate.ConnIDOf(c), Identity: gate.Identity{User: c.User(), Method: "password"}}}}
}

// Every callback, and the ones a partial success hands on, sees the
// connection id minted at accept; the handler gets the same id.
func TestConnIDReachesCallbacks(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	seen := make(chan string, 4)
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			seen <- gate.ConnIDOf(c)
			return nil, &ssh.PartialSuccessError{Next: ssh.ServerAuthCallbacks{
				KeyboardInteractiveCallback: func(c ssh.ConnMetadata, _ ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
					seen <- gate.ConnIDOf(c)
					return loggedIn(c), nil
				}}}
		},
		AuthLogCallback: func(c ssh.ConnMetadata, method string, err error) {
			if method == "password" {
				seen <- gate.ConnIDOf(c)
			}
		},
	}
	cfg.AddHostKey(signer)
	got := make(chan string, 1)
	h := func(ctx context.Context, c *Conn) {
		got <- c.ID + "/" + c.Session.ConnID
		go ssh.DiscardRequests(c.Reqs)
		for nc := range c.Chans {
			nc.Reject(ssh.Prohibited, "test")
		}
	}
	s := New(cfg, Limits{LoginGrace: 10 * time.Second, MaxUnauthenticated: 4, MaxUnauthPerSource: 4}, nil, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	cc, err := ssh.Dial("tcp", ln.Addr().String(), &ssh.ClientConfig{User: "alice", HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Auth: []ssh.AuthMethod{ssh.Password("x"), ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return nil, nil })}})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ids := <-got
	id, sessID, _ := strings.Cut(ids, "/")
	if id == "" || id != sessID {
		t.Fatalf("handler: conn id %q, session's %q", id, sessID)
	}
	for i := 0; i < 3; i++ {
		if v := <-seen; v != id {
			t.Fatalf("callback %d saw conn id %q, want %q", i, v, id)
		}
	}
}

// talk sends a client version line on c and returns once the server has read
// it: x/crypto sends its KEXINIT only after reading the client's version, so
// a few bytes past the server's version line prove it.
func talk(t *testing.T, c net.Conn) {
	t.Helper()
	c.Write([]byte("SSH-2.0-talker\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("no server version: %v", err)
	}
	if _, err := io.ReadFull(r, make([]byte, 5)); err != nil {
		t.Fatalf("no server KEXINIT: %v", err)
	}
}
