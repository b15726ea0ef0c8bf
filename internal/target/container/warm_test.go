package container

import (
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/agent"
)

// unixPair is a connected pair of unix stream sockets: the gate's accepted
// end and the dialer's (an agent's) end.
func unixPair(t *testing.T) (gateEnd, agentEnd net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	agentEnd, err = net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	gateEnd, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gateEnd.Close(); agentEnd.Close() })
	return gateEnd, agentEnd
}

func TestPeerOpen(t *testing.T) {
	g, a := unixPair(t)
	if !peerOpen(g) {
		t.Fatal("peerOpen false with the peer connected")
	}
	// The agent's version line is waiting unread: still open.
	if _, err := a.Write([]byte("SSH-2.0-sshgate-agent\r\n")); err != nil {
		t.Fatal(err)
	}
	if !peerOpen(g) {
		t.Fatal("peerOpen false with unread data from a live peer")
	}
	// The agent goes away after its version line (its container stopped):
	// the unread line must not hide the close.
	a.Close()
	if peerOpen(g) {
		t.Fatal("peerOpen true after the peer closed")
	}

	g2, a2 := unixPair(t)
	a2.(*net.UnixConn).CloseWrite()
	if peerOpen(g2) {
		t.Fatal("peerOpen true after the peer shut down its writing half")
	}
}

func TestTrySpareDropsDeadSpares(t *testing.T) {
	var nilWarm *warmSocket
	if c := nilWarm.trySpare(); c != nil {
		t.Fatal("trySpare on no warm socket returned a connection")
	}
	w := &warmSocket{spare: make(chan net.Conn, 2)}
	if c := w.trySpare(); c != nil {
		t.Fatal("trySpare with no spare returned a connection")
	}
	deadG, deadA := unixPair(t)
	liveG, _ := unixPair(t)
	deadA.Close()
	w.spare <- deadG
	w.spare <- liveG
	if c := w.trySpare(); c != liveG {
		t.Fatalf("trySpare = %v, want the live spare after dropping the dead one", c)
	}
	// The dead one was closed by trySpare.
	deadG.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := deadG.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the dead spare was not closed: read err %v", err)
	}
}

// TestAgentLegKex logs in to a real agent server with the gate's client
// settings: over the socket transport the leg uses curve25519, over the
// exec transport (whose stream may cross a network to a remote engine)
// ML-KEM.
func TestAgentLegKex(t *testing.T) {
	k, err := newKeys()
	if err != nil {
		t.Fatal(err)
	}
	host, err := ssh.ParsePrivateKey(k.hostPEM)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := agent.ParseAuthorizedKeys(k.authLines)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := agent.New(agent.Options{HostKey: host, AuthorizedKeys: ks, Shell: "/bin/sh"})
	if err != nil {
		t.Fatal(err)
	}
	bx := &box{keys: k}
	for _, tc := range []struct {
		transport string
		want      string
	}{
		{TransportSocket, ssh.KeyExchangeCurve25519},
		{TransportExec, ssh.KeyExchangeMLKEM768X25519},
	} {
		b := &Backend{cfg: Config{Transport: tc.transport, HandshakeTimeout: 10 * time.Second}}
		g, a := unixPair(t)
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(a) }()
		c, chans, reqs, err := ssh.NewClientConn(g, "agent", b.clientConfig(bx, "user"))
		if err != nil {
			t.Fatalf("%v: handshake: %v", tc.transport, err)
		}
		go ssh.DiscardRequests(reqs)
		go func() {
			for ch := range chans {
				ch.Reject(ssh.Prohibited, "")
			}
		}()
		am, ok := c.(ssh.AlgorithmsConnMetadata)
		if !ok {
			t.Fatal("no negotiated algorithms")
		}
		if got := am.Algorithms().KeyExchange; got != tc.want {
			t.Errorf("%v: key exchange %s, want %s", tc.transport, got, tc.want)
		}
		c.Close()
		<-done
	}
}
