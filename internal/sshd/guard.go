package sshd

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
)

// Outcome is how a connection's pre-authentication phase ended, for the Guard.
type Outcome int

const (
	Authenticated Outcome = iota
	AuthFailed            // tried a method, failed, left or was cut off
	NoAuth                // left (or was evicted) before trying any method
	GraceExceeded         // cut at the handshake or login grace deadline
	Refused               // refused at accept over max_unauthenticated_per_source
)

// Guard is the brute-force and flood defence (package penalty, adapted by
// app): Allowed runs in the accept loop and must not block on I/O; Observe
// hears how each connection's pre-authentication phase ended.
type Guard interface {
	Allowed(a netip.Addr) bool
	Observe(a netip.Addr, o Outcome)
}

func remoteIP(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// progressConn notes that the client sent something: under a flood, the
// connections that have sent nothing are the first to go.
type progressConn struct {
	net.Conn
	tc *trackedConn
}

func (c *progressConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.tc.progress.Load() {
		c.tc.progress.Store(true)
	}
	return n, err
}

func (s *Server) handshakeDeadline() time.Duration {
	if h := s.limits.Handshake; h > 0 && h < s.limits.LoginGrace {
		return h
	}
	return s.limits.LoginGrace
}

// watchAuth returns a copy of cfg whose AuthLogCallback also tells the
// server that a connection finished key exchange (its first authentication
// request), which moves its deadline from limits.handshake to
// limits.login_grace, and whether it tried a real method.
func (s *Server) watchAuth(cfg *ssh.ServerConfig) *ssh.ServerConfig {
	c := *cfg
	prev := cfg.AuthLogCallback
	c.AuthLogCallback = func(conn ssh.ConnMetadata, method string, err error) {
		if prev != nil {
			prev(conn, method, err)
		}
		s.mu.Lock()
		tc := s.byRemote[conn.RemoteAddr().String()]
		if tc == nil {
			s.mu.Unlock()
			return
		}
		first := !tc.kexDone
		tc.kexDone = true
		if errors.Is(err, gate.ErrUnavailable) {
			tc.unavailable = true // told once; later attempts refused quietly (quietWhenUnavailable)
		}
		if method != "none" {
			tc.attempted = true
		}
		s.mu.Unlock()
		if first && s.handshakeDeadline() < s.limits.LoginGrace {
			s.mu.Lock()
			if grace := tc.start.Add(s.limits.LoginGrace); grace.After(tc.loginDeadline) {
				tc.loginDeadline = grace
				_ = tc.SetDeadline(grace)
			}
			s.mu.Unlock()
		}
	}
	s.quietWhenUnavailable(&c)
	return &c
}

var errStillUnavailable = errors.New("refused: the store was unavailable earlier on this connection")

// quietWhenUnavailable wraps the first-factor callbacks: once a login on a
// connection failed with gate.ErrUnavailable (whose banner told the user to
// try again), its later attempts are refused without a second banner and
// without asking the store again.
func (s *Server) quietWhenUnavailable(c *ssh.ServerConfig) {
	told := func(conn ssh.ConnMetadata) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		tc := s.byRemote[conn.RemoteAddr().String()]
		return tc != nil && tc.unavailable
	}
	if f := c.PublicKeyCallback; f != nil {
		c.PublicKeyCallback = func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if told(conn) {
				return nil, errStillUnavailable
			}
			return f(conn, key)
		}
	}
	if f := c.VerifiedPublicKeyCallback; f != nil {
		c.VerifiedPublicKeyCallback = func(conn ssh.ConnMetadata, key ssh.PublicKey, p *ssh.Permissions, alg string) (*ssh.Permissions, error) {
			if told(conn) {
				return nil, errStillUnavailable
			}
			return f(conn, key, p, alg)
		}
	}
	if f := c.PasswordCallback; f != nil {
		c.PasswordCallback = func(conn ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if told(conn) {
				return nil, errStillUnavailable
			}
			return f(conn, pw)
		}
	}
	if f := c.KeyboardInteractiveCallback; f != nil {
		c.KeyboardInteractiveCallback = func(conn ssh.ConnMetadata, ch ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			if told(conn) {
				return nil, errStillUnavailable
			}
			return f(conn, ch)
		}
	}
}

// extender moves tc's login deadline for an authentication step that waits
// on a person, never past start + limits.InteractiveLogin, never earlier
// than it is. The connection stays counted as unauthenticated meanwhile.
func (s *Server) extender(tc *trackedConn) func(time.Time) time.Time {
	return func(until time.Time) time.Time {
		limit := tc.start.Add(max(s.limits.InteractiveLogin, s.limits.LoginGrace))
		if until.After(limit) {
			until = limit
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if tc.authed {
			return time.Time{}
		}
		tc.kexDone = true // the deadline is no longer the handshake's
		if until.After(tc.loginDeadline) {
			tc.loginDeadline = until
			_ = tc.SetDeadline(until)
		}
		return tc.loginDeadline
	}
}

// evictLocked makes room under a flood: the oldest connection still
// authenticating that has not sent a single byte is closed. Clients that
// talk are never evicted; when all do, the new connection is refused.
func (s *Server) evictLocked() {
	var victim *trackedConn
	for tc := range s.pending {
		if tc.progress.Load() || tc.released {
			continue
		}
		if victim == nil || tc.start.Before(victim.start) {
			victim = tc
		}
	}
	if victim != nil {
		s.evictOneLocked(victim, "unauthenticated_limit")
	}
}

// evictSourceLocked makes room for a new connection from src when src has
// its whole share of connections still authenticating: the oldest of them
// that has sent nothing goes, else the oldest of them. A real user's
// connection finishes its handshake in well under a second and is then no
// longer counted, so idle or stalled connections from the same address (one
// NAT, one proxy, an attacker beside its victims) keep nobody out for more
// than one retry.
func (s *Server) evictSourceLocked(src netip.Prefix) {
	var silent, any *trackedConn
	for tc := range s.pending {
		if tc.released || tc.src != src {
			continue
		}
		if any == nil || tc.start.Before(any.start) {
			any = tc
		}
		if !tc.progress.Load() && (silent == nil || tc.start.Before(silent.start)) {
			silent = tc
		}
	}
	victim := silent
	if victim == nil {
		victim = any
	}
	if victim != nil {
		s.evictOneLocked(victim, "per_source_limit")
	}
}

func (s *Server) evictOneLocked(victim *trackedConn, reason string) {
	victim.evicted = true
	s.releaseLocked(victim)
	_ = victim.raw.Close() // not the coalescer's Close, which may wait to flush
	s.observeEvicted(reason)
}

// observe tells the guard how tc's pre-authentication phase ended (err from
// the handshake, nil on success).
func (s *Server) observe(tc *trackedConn, addr netip.Addr, err error) {
	g := s.limits.Guard
	if g == nil {
		return
	}
	s.mu.Lock()
	draining, evicted, attempted, unavailable := s.draining, tc.evicted, tc.attempted, tc.unavailable
	s.mu.Unlock()
	switch {
	case err == nil:
		g.Observe(addr, Authenticated)
	case draining, unavailable: // not the client's doing
	case evicted:
		g.Observe(addr, NoAuth)
	case errors.Is(err, os.ErrDeadlineExceeded):
		g.Observe(addr, GraceExceeded)
	case attempted:
		g.Observe(addr, AuthFailed)
	default:
		g.Observe(addr, NoAuth)
	}
}
