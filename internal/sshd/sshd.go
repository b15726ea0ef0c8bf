// Package sshd is the gate's SSH front door: the accept loop on x/crypto/ssh,
// the pre-authentication limits (login grace deadline, caps on connections
// still authenticating, overall and per source), draining on shutdown, and
// the connection id, minted at accept and shown to every authentication
// callback. What happens after authentication belongs to the Handler.
//
// Must not import: auth/... target/... relay store/... policy broker account route/... webhook app live
package sshd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/coalesce"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/quickack"
)

// Handler serves one authenticated connection. It returns when the
// connection is over; ctx is cancelled when the server force-closes.
type Handler func(ctx context.Context, c *Conn)

// Conn is an authenticated connection.
type Conn struct {
	*ssh.ServerConn
	ID      string        // minted at accept; the same as Session.ConnID
	Session *gate.Session // what authentication proved, typed
	Chans   <-chan ssh.NewChannel
	Reqs    <-chan *ssh.Request
	Log     *slog.Logger
}

// Limits are the pre-authentication defences.
type Limits struct {
	LoginGrace         time.Duration // deadline for version exchange, kex and auth
	MaxUnauthenticated int           // connections still authenticating, all sources
	MaxUnauthPerSource int           // the same, per source address (IPv4 /32, IPv6 /64)
	Handshake          time.Duration // deadline for version exchange and kex (0: LoginGrace)
	// InteractiveLogin: how far past its start an authentication step that
	// waits on a person (a device sign-in) may move a connection's login
	// deadline (0: never past LoginGrace). OpenSSH's LoginGraceTime is 120 s;
	// a browser sign-in can take longer.
	InteractiveLogin time.Duration
	Guard            Guard // penalties and bans (guard.go); nil: none
	Offer            Offer // the ciphers and MACs per client (offer.go); nil: the config's for all
	Proxy            Proxy // PROXY protocol from trusted balancers (proxy.go)
}

// Server accepts SSH connections.
type Server struct {
	cfg     *ssh.ServerConfig
	limits  Limits
	handler Handler
	log     *slog.Logger
	obs     Observer // observe.go

	mu        sync.Mutex
	unauth    int
	perSource map[netip.Prefix]int
	conns     map[*trackedConn]struct{}
	pending   map[*trackedConn]struct{} // still authenticating
	byRemote  map[string]*trackedConn   // pending, by remote address, for AuthLogCallback
	listeners map[net.Listener]struct{}
	headers   map[net.Conn]struct{} // PROXY headers being read (proxy.go)
	headerWG  sync.WaitGroup
	draining  bool
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
}

type trackedConn struct {
	net.Conn
	authed bool
	raw    net.Conn // under the write coalescer: closed at once on eviction
	src    netip.Prefix
	start  time.Time
	// under Server.mu:
	released    bool // no longer counted as unauthenticated
	evicted     bool // closed to make room under a flood
	kexDone     bool // the client reached authentication
	attempted   bool // the client tried a real authentication method
	unavailable bool // a login failed on gate.ErrUnavailable (told once)
	// the deadline in force while authenticating (handshake, login
	// grace, or an interactive step's)
	loginDeadline time.Time
	// set by the reader:
	progress atomic.Bool // the client has sent at least one byte
}

// New returns a server. cfg must be complete (host keys, every callback):
// the server works on copies of it. obs may be nil.
func New(cfg *ssh.ServerConfig, limits Limits, obs Observer, h Handler, log *slog.Logger) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{limits: limits, handler: h, log: log, obs: obs,
		perSource: map[netip.Prefix]int{}, conns: map[*trackedConn]struct{}{},
		pending: map[*trackedConn]struct{}{}, byRemote: map[string]*trackedConn{},
		listeners: map[net.Listener]struct{}{}, headers: map[net.Conn]struct{}{}, ctx: ctx, cancel: cancel}
	s.cfg = s.watchAuth(cfg)
	return s
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("sshd: server closed")

// Serve accepts on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			draining := s.draining
			s.mu.Unlock()
			if draining {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, backing off", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		// Quick ACKs through the handshake: a stock ssh client waits on
		// the gate's delayed ACKs twice in it otherwise (package quickack).
		s.accept(quickack.Wrap(nc)) // proxy.go: a PROXY header first, or straight to handle
	}
}

func sourcePrefix(addr net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Prefix{}
	}
	a := ap.Addr().Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

func (s *Server) handle(nc net.Conn) {
	addr := remoteIP(nc.RemoteAddr())
	if g := s.limits.Guard; g != nil && !g.Allowed(addr) {
		_ = nc.Close() // banned: not one SSH byte
		s.observeBanned()
		return
	}
	src := sourcePrefix(nc.RemoteAddr())
	s.mu.Lock()
	if !s.draining && s.perSource[src] >= s.limits.MaxUnauthPerSource && s.limits.MaxUnauthPerSource > 0 {
		s.evictSourceLocked(src)
	}
	if !s.draining && s.unauth >= s.limits.MaxUnauthenticated && s.perSource[src] < s.limits.MaxUnauthPerSource {
		s.evictLocked()
	}
	if s.draining || s.unauth >= s.limits.MaxUnauthenticated || s.perSource[src] >= s.limits.MaxUnauthPerSource {
		full := !s.draining
		perSource := s.perSource[src] >= s.limits.MaxUnauthPerSource
		s.observeRejected(s.draining, s.unauth >= s.limits.MaxUnauthenticated)
		s.mu.Unlock()
		if full {
			s.log.Warn("refusing connection: too many unauthenticated connections", "remote", nc.RemoteAddr().String())
			if g := s.limits.Guard; g != nil && perSource {
				go g.Observe(addr, Refused)
			}
		}
		_ = nc.Close()
		return
	}
	s.observeAccepted()
	s.unauth++
	s.perSource[src]++
	wc := coalesce.New(nc)
	tc := &trackedConn{Conn: wc, raw: nc, src: src, start: time.Now()}
	s.conns[tc] = struct{}{}
	s.pending[tc] = struct{}{}
	s.byRemote[nc.RemoteAddr().String()] = tc
	s.wg.Add(1)
	s.mu.Unlock()
	pc := &progressConn{Conn: wc, tc: tc}

	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			s.releaseLocked(tc)
			delete(s.conns, tc)
			s.mu.Unlock()
			_ = pc.Close()
		}()
		id := gate.NewID()[:16]
		log := s.log.With("conn_id", id, "remote", nc.RemoteAddr().String())
		deadline := tc.start.Add(s.handshakeDeadline())
		s.mu.Lock()
		tc.loginDeadline = deadline
		s.mu.Unlock()
		_ = nc.SetDeadline(deadline)
		cfg := forConn(s.cfg, id, s.extender(tc))
		var conn net.Conn = pc
		if s.limits.Offer != nil {
			var version string
			version, conn = peekVersion(pc, versionWait, deadline)
			cfg.Config.Ciphers, cfg.Config.MACs = s.limits.Offer(version)
		}
		sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
		s.observeHandshake(err)
		if u, ok := nc.(*untrustedConn); ok && err != nil && u.refused() {
			log.Warn("refusing connection: PROXY protocol header from an untrusted source")
			s.observeReason(RejectProxyUntrusted)
		}
		if err != nil {
			log.Debug("handshake failed", "err", err)
			s.observe(tc, addr, err)
			return
		}
		_ = nc.SetDeadline(time.Time{})
		s.mu.Lock()
		s.releaseLocked(tc)
		tc.authed = true
		s.mu.Unlock()
		s.observe(tc, addr, nil)
		sess := sessionOf(sc)
		if sess == nil || sess.ConnID != id {
			// Authentication always attaches the session; a callback that
			// did not is a wiring bug, and the connection gets nothing.
			log.Error("authenticated connection without its session: closed")
			return
		}
		log = log.With("user", sess.Identity.User)
		log.Info("authenticated", "method", sess.Identity.Method,
			"key", sess.Identity.Fingerprint, "client", safeVersion(sc.ClientVersion()))
		s.handler(s.ctx, &Conn{ServerConn: sc, ID: id, Session: sess, Chans: chans, Reqs: reqs, Log: log})
		_ = sc.Close()
		log.Info("connection closed")
	}()
}

// releaseLocked stops counting tc as unauthenticated (once).
func (s *Server) releaseLocked(tc *trackedConn) {
	if tc.released {
		return
	}
	tc.released = true
	s.unauth--
	if s.perSource[tc.src]--; s.perSource[tc.src] <= 0 {
		delete(s.perSource, tc.src)
	}
	delete(s.pending, tc)
	if s.byRemote[tc.RemoteAddr().String()] == tc {
		delete(s.byRemote, tc.RemoteAddr().String())
	}
}

func safeVersion(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	return string(out)
}

// StopAccepting begins the drain: Draining reports true from now on (so
// /readyz fails), the listeners close, connections still authenticating or
// still sending their PROXY header are closed; authenticated ones go on.
// Shutdown calls it too; calling both is fine.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.conns {
		if !c.authed {
			_ = c.Close()
		}
	}
	for c := range s.headers {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.headerWG.Wait() // each ends in handle, which refuses while draining
}

// WaitIdle waits until every connection has ended, or ctx is done (then it
// returns ctx's error and closes nothing).
func (s *Server) WaitIdle(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown stops accepting (StopAccepting), and waits for live sessions to
// end until ctx is done; then it closes them, and returns once their
// handlers have returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.StopAccepting()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}
