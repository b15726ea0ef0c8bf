package sshd

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

type fakeGuard struct {
	mu     sync.Mutex
	banned map[netip.Addr]bool
	seen   []Outcome
}

func (g *fakeGuard) Allowed(a netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.banned[a]
}

func (g *fakeGuard) Observe(a netip.Addr, o Outcome) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seen = append(g.seen, o)
}

func (g *fakeGuard) waitSeen(t *testing.T, want Outcome) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		g.mu.Lock()
		for i, o := range g.seen {
			if o == want {
				g.seen = append(g.seen[:i], g.seen[i+1:]...)
				g.mu.Unlock()
				return
			}
		}
		g.mu.Unlock()
	}
	t.Fatalf("outcome %d never observed", want)
}

func TestBannedClosedAtAccept(t *testing.T) {
	g := &fakeGuard{banned: map[netip.Addr]bool{netip.MustParseAddr("127.0.0.3"): true}}
	_, addr := testServer(t, Limits{LoginGrace: 5 * time.Second, MaxUnauthenticated: 10, MaxUnauthPerSource: 10, Guard: g})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if n != 0 || err != nil {
		t.Fatalf("banned source read %d bytes (%v); want a close before any SSH byte", n, err)
	}
	if err := login(addr, "right"); err != nil {
		t.Fatalf("another source: %v", err)
	}
	g.waitSeen(t, Authenticated)
}

func TestOutcomes(t *testing.T) {
	g := &fakeGuard{}
	_, addr := testServer(t, Limits{LoginGrace: 3 * time.Second, Handshake: 500 * time.Millisecond,
		MaxUnauthenticated: 10, MaxUnauthPerSource: 10, Guard: g})
	if err := login(addr, "wrong"); err == nil {
		t.Fatal("wrong password logged in")
	}
	g.waitSeen(t, AuthFailed)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	g.waitSeen(t, NoAuth)
	// A client that sends nothing is cut at the handshake deadline, well
	// before the login grace.
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if took := waitClosed(t, c, 2500*time.Millisecond); took < 400*time.Millisecond {
		t.Fatalf("closed after %s, before the handshake deadline", took)
	}
	g.waitSeen(t, GraceExceeded)
	// A real login takes longer than nothing but is not cut: the deadline
	// moves to the login grace once key exchange is done.
	if err := login(addr, "right"); err != nil {
		t.Fatal(err)
	}
}

func TestFloodEvictsSilentConnections(t *testing.T) {
	const max = 20
	_, addr := testServer(t, Limits{LoginGrace: 30 * time.Second, MaxUnauthenticated: max, MaxUnauthPerSource: 5})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// Fill the global cap with silent connections from many sources.
	for i := 0; i < 3*max; i++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(i+1))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for i := 0; i < 5; i++ {
		if err := login(addr, "right"); err != nil {
			t.Fatalf("login %d under a flood of silent connections: %v", i, err)
		}
	}
}
