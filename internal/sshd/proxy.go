package sshd

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
)

// Proxy is the PROXY protocol (v1 and v2) at the front door. A connection
// from a source in Trusted must open with a header (unless Required is
// false), read within Timeout before anything else happens, and is then
// known by the client address the header carries: limits, bans,
// penalties, logs and audit all see that address. A header from any other
// source is refused, so a client can never choose its own address.
type Proxy struct {
	Trusted  []netip.Prefix // the load balancers; empty: PROXY protocol off
	Required bool           // a trusted source must send a header
	Timeout  time.Duration  // for the header (0: 5s)
}

// Reasons a connection is refused over the PROXY protocol (label values of
// Observer.ConnRejected).
const (
	RejectProxyUntrusted = "proxy_untrusted" // a header from a source not trusted
	RejectProxyMissing   = "proxy_missing"   // a trusted source sent none (Required)
	RejectProxyInvalid   = "proxy_invalid"   // a malformed, late or unusable header
)

var (
	errProxyUntrusted = errors.New("PROXY protocol header from an untrusted source")
	errProxyMissing   = errors.New("no PROXY protocol header from a trusted source")
)

func (p Proxy) trusts(a netip.Addr) bool {
	for _, pf := range p.Trusted {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

func (p Proxy) timeout() time.Duration {
	if p.Timeout <= 0 {
		return 5 * time.Second
	}
	return p.Timeout
}

// readProxyHeader reads a PROXY header (v1 or v2) from r, which reads a
// connection from the trusted balancer at peer, and returns the client
// address it names. A LOCAL command (the balancer's own health check) and
// an UNKNOWN or unspecified family keep peer, as the protocol says; a
// datagram or unix family is invalid for an SSH listener. Without a header
// it returns errProxyMissing if required, else peer. Nothing past the
// header is consumed.
func readProxyHeader(r *bufio.Reader, peer net.Addr, required bool) (net.Addr, error) {
	h, err := proxyproto.Read(r)
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		if required {
			return nil, errProxyMissing
		}
		return peer, nil
	case err != nil:
		if !required && errors.Is(err, os.ErrDeadlineExceeded) && r.Buffered() == 0 {
			return peer, nil // a client that waits for the server to speak first
		}
		return nil, err
	}
	if h.Command.IsLocal() || h.TransportProtocol.IsUnspec() {
		return peer, nil
	}
	src, _, ok := h.TCPAddrs()
	if !ok || !h.TransportProtocol.IsStream() {
		return nil, errors.New("PROXY protocol header for a non-TCP connection")
	}
	ip, ok := netip.AddrFromSlice(src.IP)
	if !ok || !ip.Unmap().IsValid() || ip.Unmap().IsUnspecified() {
		return nil, errors.New("PROXY protocol header without a usable source address")
	}
	return &net.TCPAddr{IP: src.IP, Port: src.Port}, nil
}

// proxiedConn is a connection from a trusted balancer after its header:
// reads come through the reader that held the header, and RemoteAddr is the
// client the header named.
type proxiedConn struct {
	net.Conn
	r      *bufio.Reader
	remote net.Addr
}

func (c *proxiedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *proxiedConn) RemoteAddr() net.Addr       { return c.remote }

// readHeader serves a connection from a trusted balancer: it reads the
// header under its own deadline (a balancer that stalls holds one
// goroutine for at most Proxy.Timeout, and header reads in flight are
// bounded by limits.max_unauthenticated), then hands the connection to
// handle under the client's address.
func (s *Server) readHeader(nc net.Conn) {
	defer s.headerWG.Done()
	defer func() {
		s.mu.Lock()
		delete(s.headers, nc)
		s.mu.Unlock()
	}()
	_ = nc.SetReadDeadline(time.Now().Add(s.limits.Proxy.timeout()))
	br := bufio.NewReaderSize(nc, 512)
	addr, err := readProxyHeader(br, nc.RemoteAddr(), s.limits.Proxy.Required)
	if err != nil {
		reason := RejectProxyInvalid
		if errors.Is(err, errProxyMissing) {
			reason = RejectProxyMissing
		}
		s.log.Warn("refusing connection: bad PROXY protocol header", "balancer", nc.RemoteAddr().String(), "reason", reason, "err", err)
		s.observeReason(reason)
		_ = nc.Close()
		return
	}
	_ = nc.SetReadDeadline(time.Time{})
	s.handle(&proxiedConn{Conn: nc, r: br, remote: addr})
}

// accept routes a new TCP connection: from a trusted balancer to its
// header read, from anyone else straight to handle, watched for a header
// it may not send.
func (s *Server) accept(nc net.Conn) {
	if len(s.limits.Proxy.Trusted) == 0 || !s.limits.Proxy.trusts(remoteIP(nc.RemoteAddr())) {
		s.handle(&untrustedConn{Conn: nc})
		return
	}
	s.mu.Lock()
	if s.draining || len(s.headers) >= max(s.limits.MaxUnauthenticated, 1) {
		draining := s.draining
		s.observeRejected(draining, true)
		s.mu.Unlock()
		if !draining {
			s.log.Warn("refusing connection: too many PROXY protocol headers being read", "balancer", nc.RemoteAddr().String())
		}
		_ = nc.Close()
		return
	}
	s.headers[nc] = struct{}{}
	s.headerWG.Add(1)
	s.mu.Unlock()
	go s.readHeader(nc)
}

// untrustedConn is a connection from a source that may not send a PROXY
// header: if its first bytes are one (either version's signature), every
// read fails with errProxyUntrusted and the handshake ends there, before
// the server has read anything else from it.
type untrustedConn struct {
	net.Conn
	mu      sync.Mutex
	checked bool
	head    []byte // the first bytes, until they decide
	pending []byte // bytes read while deciding, not yet returned
	err     error
	header  atomic.Bool // the first bytes were a PROXY header
}

var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// looksLikeProxyHeader reports whether b starts a PROXY header (decided is
// false while b is a prefix of a signature and too short to tell).
func looksLikeProxyHeader(b []byte) (header, decided bool) {
	for _, sig := range [][]byte{sigV1, sigV2} {
		n := min(len(b), len(sig))
		if bytes.Equal(b[:n], sig[:n]) {
			if n == len(sig) {
				return true, true
			}
			return false, false
		}
	}
	return false, true
}

func (c *untrustedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.checked {
		return c.Conn.Read(p)
	}
	for {
		buf := make([]byte, 64)
		n, err := c.Conn.Read(buf)
		c.head = append(c.head, buf[:n]...)
		header, decided := looksLikeProxyHeader(c.head)
		switch {
		case header:
			c.header.Store(true)
			c.err = errProxyUntrusted
			return 0, c.err
		case decided || err != nil: // an error: what came before it is plain data
			c.checked, c.pending, c.head = true, c.head, nil
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			if len(c.pending) > 0 {
				err = nil // the rest first; the next read from the conn says it again
			}
			return n, err
		}
	}
}

// refused reports whether c was closed for a PROXY header.
func (c *untrustedConn) refused() bool {
	return c.header.Load()
}
