package sshd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/crypto/ssh"
)

// proxyServer is a server trusting trusted for PROXY headers; it reports
// each authenticated connection's remote address (as the handler and the
// password callback see it) on the returned channel.
func proxyServer(t *testing.T, p Proxy, g Guard) (addr string, seen <-chan string, obs *countObserver) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	ch := make(chan string, 16)
	cfg := &ssh.ServerConfig{PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		ch <- "auth " + c.RemoteAddr().String()
		return loggedIn(c), nil
	}}
	cfg.AddHostKey(signer)
	h := func(ctx context.Context, c *Conn) {
		ch <- "conn " + c.RemoteAddr().String()
		go ssh.DiscardRequests(c.Reqs)
		for nc := range c.Chans {
			nc.Reject(ssh.Prohibited, "test")
		}
	}
	obs = &countObserver{n: map[string]int{}}
	s := New(cfg, Limits{LoginGrace: 10 * time.Second, MaxUnauthenticated: 10, MaxUnauthPerSource: 10, Guard: g, Proxy: p},
		obs, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
	return ln.Addr().String(), ch, obs
}

// loginOver logs in over nc, after writing pre (a PROXY header, or nothing).
func loginOver(nc net.Conn, addr string, pre []byte) error {
	defer nc.Close()
	if len(pre) > 0 {
		if _, err := nc.Write(pre); err != nil {
			return err
		}
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.Password("x")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey()}) // test server with a throwaway key
	if err != nil {
		return err
	}
	return ssh.NewClient(c, chans, reqs).Close()
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func v2Header(t *testing.T, src string) []byte {
	t.Helper()
	ap := netip.MustParseAddrPort(src)
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(ap), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222})
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func expect(t *testing.T, seen <-chan string, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-seen:
			if got != w {
				t.Fatalf("saw %q, want %q", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("never saw %q", w)
		}
	}
}

// A trusted balancer's header, v1 or v2, names the client every part of
// the front door sees: the authentication callbacks, the handler, and the
// guard (a client banned by its real address is refused through the
// balancer).
func TestProxyHeaderNamesTheClient(t *testing.T) {
	g := &fakeGuard{banned: map[netip.Addr]bool{netip.MustParseAddr("198.51.100.9"): true}}
	addr, seen, obs := proxyServer(t, Proxy{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/30")}, Required: true}, g)

	if err := loginOver(dialFrom(t, "127.0.0.1", addr), addr, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 40001 2222\r\n")); err != nil {
		t.Fatalf("v1: %v", err)
	}
	expect(t, seen, "auth 203.0.113.7:40001", "conn 203.0.113.7:40001")
	if err := loginOver(dialFrom(t, "127.0.0.2", addr), addr, v2Header(t, "[2001:db8::5]:40002")); err != nil {
		t.Fatalf("v2: %v", err)
	}
	expect(t, seen, "auth [2001:db8::5]:40002", "conn [2001:db8::5]:40002")
	g.waitSeen(t, Authenticated)

	// Banned by its real address: closed before one SSH byte.
	c := dialFrom(t, "127.0.0.1", addr)
	c.Write([]byte("PROXY TCP4 198.51.100.9 127.0.0.1 40003 2222\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
		t.Fatalf("banned client through the balancer read %d bytes (%v)", n, err)
	}
	c.Close()
	waitCount(t, obs, "rejected banned", 1)

	// A LOCAL command (a balancer's own check) is the balancer itself.
	local := []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")
	if err := loginOver(dialFrom(t, "127.0.0.1", addr), addr, local); err != nil {
		t.Fatalf("LOCAL: %v", err)
	}
	if got := <-seen; !strings.HasPrefix(got, "auth 127.0.0.1:") {
		t.Fatalf("LOCAL seen as %q", got)
	}
}

// From a trusted source, a connection without a header is refused when
// headers are required, and served under the balancer's address when not;
// a header that never finishes is closed at the header timeout.
func TestProxyHeaderMissingOrSlow(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	addr, _, obs := proxyServer(t, Proxy{Trusted: trusted, Required: true, Timeout: 500 * time.Millisecond}, nil)
	if err := loginOver(dialFrom(t, "127.0.0.1", addr), addr, nil); err == nil {
		t.Fatal("a trusted source without a header logged in")
	}
	waitCount(t, obs, "rejected proxy_missing", 1)

	c := dialFrom(t, "127.0.0.1", addr)
	defer c.Close()
	c.Write([]byte("PROXY TCP4 203.0.113.7")) // and nothing more
	if took := waitClosed(t, c, 5*time.Second); took > 4*time.Second {
		t.Fatalf("a stalled header held the connection %s", took)
	}
	waitCount(t, obs, "rejected proxy_invalid", 1)
	if obs.get("accepted") != 0 {
		t.Fatalf("accepted %d connections without a header", obs.get("accepted"))
	}

	addr2, seen2, _ := proxyServer(t, Proxy{Trusted: trusted, Required: false, Timeout: 500 * time.Millisecond}, nil)
	if err := loginOver(dialFrom(t, "127.0.0.1", addr2), addr2, nil); err != nil {
		t.Fatalf("optional header: %v", err)
	}
	if got := <-seen2; !strings.HasPrefix(got, "auth 127.0.0.1:") {
		t.Fatalf("without a header seen as %q", got)
	}
}

// A header from a source that is not trusted is refused, whichever
// version, and its forged address reaches nothing; a plain client from
// the same source logs in under its own address.
func TestProxyHeaderFromUntrustedSource(t *testing.T) {
	for _, trusted := range [][]netip.Prefix{nil, {netip.MustParsePrefix("127.0.0.9/32")}} {
		addr, seen, obs := proxyServer(t, Proxy{Trusted: trusted, Required: true}, nil)
		for i, h := range [][]byte{[]byte("PROXY TCP4 203.0.113.7 127.0.0.1 40001 2222\r\n"), v2Header(t, "203.0.113.7:40001")} {
			if err := loginOver(dialFrom(t, "127.0.0.1", addr), addr, h); err == nil {
				t.Fatalf("trusted %v: header %d from an untrusted source logged in", trusted, i)
			}
			waitCount(t, obs, "rejected proxy_untrusted", i+1)
		}
		if err := loginOver(dialFrom(t, "127.0.0.1", addr), addr, nil); err != nil {
			t.Fatalf("plain client: %v", err)
		}
		if got := <-seen; !strings.HasPrefix(got, "auth 127.0.0.1:") {
			t.Fatalf("plain client seen as %q", got)
		}
		select {
		case got := <-seen:
			if strings.Contains(got, "203.0.113.7") {
				t.Fatalf("forged address reached the server: %q", got)
			}
		default:
		}
	}
}

func TestReadProxyHeader(t *testing.T) {
	peer := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 9}
	for _, tc := range []struct {
		name, in string
		required bool
		want     string // the address, or "error"
		rest     string // what a later read gets
	}{
		{"v1 tcp4", "PROXY TCP4 192.0.2.1 10.0.0.2 1234 22\r\nSSH-2.0-x\r\n", true, "192.0.2.1:1234", "SSH-2.0-x\r\n"},
		{"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 1234 22\r\nSSH", true, "[2001:db8::1]:1234", "SSH"},
		{"v1 unknown", "PROXY UNKNOWN\r\nSSH", true, "10.0.0.1:9", "SSH"},
		{"v1 junk", "PROXY TCP4 nonsense\r\n", true, "error", ""},
		{"v1 zero source", "PROXY TCP4 0.0.0.0 10.0.0.2 1234 22\r\n", true, "error", ""},
		{"none, required", "SSH-2.0-x\r\n", true, "error", ""},
		{"none, optional", "SSH-2.0-x\r\n", false, "10.0.0.1:9", "SSH-2.0-x\r\n"},
		{"empty", "", true, "error", ""},
		{"v2 udp", "\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c\xc0\x00\x02\x01\x0a\x00\x00\x02\x04\xd2\x00\x16SSH", true, "error", ""},
		{"v2 tcp4", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\x0a\x00\x00\x02\x04\xd2\x00\x16SSH", true, "192.0.2.1:1234", "SSH"},
		{"v2 short", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00", true, "error", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tc.in))
			got, err := readProxyHeader(r, peer, tc.required)
			if tc.want == "error" {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != tc.rest {
				t.Fatalf("rest %q, want %q", rest, tc.rest)
			}
		})
	}
}

// untrustedConn returns every byte of a plain stream, however it is split
// into reads, and fails on a header, however split.
func TestUntrustedConnReads(t *testing.T) {
	for _, tc := range []struct {
		in     string
		header bool
	}{
		{"SSH-2.0-OpenSSH_9.2\r\nrest", false},
		{"PROXX TCP4", false},
		{"\r\n\r\nnot v2", false},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", true},
		{string(sigV2) + "\x21\x11", true},
		{"P", false},
	} {
		for _, chunk := range []int{1, 3, 100} {
			a, b := net.Pipe()
			go func() {
				for s := tc.in; len(s) > 0; {
					n := min(chunk, len(s))
					a.Write([]byte(s[:n]))
					s = s[n:]
				}
				a.Close()
			}()
			u := &untrustedConn{Conn: b}
			got, err := io.ReadAll(u)
			b.Close()
			if tc.header {
				if !errors.Is(err, errProxyUntrusted) || !u.refused() {
					t.Errorf("%q by %d: err %v, want refused", tc.in, chunk, err)
				}
				continue
			}
			if err != nil || string(got) != tc.in || u.refused() {
				t.Errorf("%q by %d: got %q, %v", tc.in, chunk, got, err)
			}
		}
	}
}

func FuzzReadProxyHeader(f *testing.F) {
	for _, s := range []string{"PROXY TCP4 192.0.2.1 10.0.0.2 1234 22\r\nSSH", "PROXY UNKNOWN\r\n", "SSH-2.0-x\r\n",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\x0a\x00\x00\x02\x04\xd2\x00\x16SSH",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24" + strings.Repeat("\x01", 36), "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"} {
		f.Add([]byte(s), true)
	}
	peer := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 9}
	f.Fuzz(func(t *testing.T, in []byte, required bool) {
		r := bufio.NewReader(bytes.NewReader(in))
		got, err := readProxyHeader(r, peer, required)
		if err != nil {
			return
		}
		ap, perr := netip.ParseAddrPort(got.String())
		if perr != nil || ap.Addr().IsUnspecified() {
			t.Fatalf("address %v from %q", got, in)
		}
		if got != peer && !bytes.HasPrefix(in, sigV1[:5]) && !bytes.HasPrefix(in, sigV2) {
			t.Fatalf("address %v without a header in %q", got, in)
		}
		// The untrusted path refuses what the trusted path read as a header.
		u := &untrustedConn{Conn: &bytesConn{Reader: bytes.NewReader(in)}}
		_, uerr := io.ReadAll(u)
		if got != peer && !errors.Is(uerr, errProxyUntrusted) {
			t.Fatalf("header %q read as %v but not refused from an untrusted source", in, got)
		}
	})
}

// bytesConn is a net.Conn that reads from a reader.
type bytesConn struct {
	net.Conn
	*bytes.Reader
}

func (c *bytesConn) Read(p []byte) (int, error) { return c.Reader.Read(p) }
