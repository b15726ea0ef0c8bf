package upstream

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/target"
)

func signer(t *testing.T) ssh.Signer {
	t.Helper()
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeTarget is an x/crypto SSH server on 127.0.0.1:0 that presents hostKey
// and records the key each client authenticated with.
type fakeTarget struct {
	addr string
	mu   sync.Mutex
	seen []ssh.PublicKey
}

func startTarget(t *testing.T, hostKey ssh.Signer, accept func(ssh.PublicKey) bool) *fakeTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeTarget{addr: ln.Addr().String()}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		ft.mu.Lock()
		ft.seen = append(ft.seen, k)
		ft.mu.Unlock()
		if accept(k) {
			return &ssh.Permissions{}, nil
		}
		return nil, errors.New("no")
	}}
	cfg.AddHostKey(hostKey)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				go func() {
					for nc := range chans {
						nc.Reject(ssh.Prohibited, "")
					}
				}()
				sc.Wait()
			}()
		}
	}()
	return ft
}

func (f *fakeTarget) last() ssh.PublicKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		return nil
	}
	return f.seen[len(f.seen)-1]
}

func login(t *testing.T, b *Backend, req target.Request) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := b.Open(ctx, req)
	if err != nil {
		return err
	}
	c, chans, reqs, err := ssh.NewClientConn(u.Conn, u.Conn.RemoteAddr().String(), u.Client)
	if err != nil {
		u.Conn.Close()
		return err
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		for range chans {
		}
	}()
	return c.Close()
}

func TestLoginCertificateAndHostCA(t *testing.T) {
	own := &ca.CA{User: signer(t), Host: signer(t)}
	trust := ca.NewTrust(t.TempDir(), own, nil)
	gateKey := signer(t)
	hostKey := signer(t)
	hostCert, err := own.SignHost(hostKey.PublicKey(), []string{"127.0.0.1"}, "t", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certHost, _ := ssh.NewCertSigner(hostCert, hostKey)
	userCA := own.User.PublicKey().Marshal()
	ft := startTarget(t, certHost, func(k ssh.PublicKey) bool {
		c, ok := k.(*ssh.Certificate)
		return ok && string(c.SignatureKey.Marshal()) == string(userCA)
	})
	b, _ := New(Options{GateKey: gateKey, Timeout: 5 * time.Second, CA: trust, InwardTTL: 2 * time.Minute,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})

	for _, fwd := range []bool{false, true} {
		req := target.Request{
			Target: gate.Target{Name: "web", Kind: gate.KindUpstream, Upstream: &gate.UpstreamSpec{Addr: ft.addr}},
			Login:  "deploy", ID: &gate.Identity{User: "alice"}, ConnID: "c0ffee", Forwarding: fwd, AgentForwarding: !fwd,
		}
		if err := login(t, b, req); err != nil {
			t.Fatalf("login with certificate (forwarding %v): %v", fwd, err)
		}
		cert, ok := ft.last().(*ssh.Certificate)
		if !ok {
			t.Fatalf("target saw %T, want a certificate", ft.last())
		}
		if len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != "deploy" {
			t.Errorf("principals %q, want [deploy]", cert.ValidPrincipals)
		}
		if !strings.Contains(cert.KeyId, "user=alice") || !strings.Contains(cert.KeyId, "conn=c0ffee") {
			t.Errorf("key id %q names neither the user nor the connection", cert.KeyId)
		}
		if left := time.Until(time.Unix(int64(cert.ValidBefore), 0)); left > 2*time.Minute || left < time.Minute {
			t.Errorf("certificate valid for %s more, want about 2m", left)
		}
		if _, ok := cert.Extensions["permit-port-forwarding"]; ok != fwd {
			t.Errorf("permit-port-forwarding %v with grant forwarding %v", ok, fwd)
		}
		if _, ok := cert.Extensions["permit-agent-forwarding"]; ok != !fwd {
			t.Errorf("permit-agent-forwarding %v with grant agent forwarding %v", ok, !fwd)
		}
	}

	// Auth "key": the gate key only.
	keyOnly := startTarget(t, certHost, func(k ssh.PublicKey) bool { return string(k.Marshal()) == string(gateKey.PublicKey().Marshal()) })
	req := target.Request{Target: gate.Target{Name: "old", Kind: gate.KindUpstream, Upstream: &gate.UpstreamSpec{Addr: keyOnly.addr, Auth: gate.AuthKey}}, Login: "deploy"}
	if err := login(t, b, req); err != nil {
		t.Fatalf("login with the gate key: %v", err)
	}
	if _, isCert := keyOnly.last().(*ssh.Certificate); isCert {
		t.Error("auth key offered a certificate")
	}
	// Default (cert) falls back to the gate key for a target that does not trust the CA.
	req.Target.Upstream.Auth = ""
	if err := login(t, b, req); err != nil {
		t.Fatalf("fallback to the gate key: %v", err)
	}

	// Host verification: a wrong principal and another CA are refused with a HostCertError.
	for name, spec := range map[string]*gate.UpstreamSpec{
		"wrong principal": {Addr: ft.addr, HostPrincipal: "db.internal"},
	} {
		err := login(t, b, target.Request{Target: gate.Target{Name: "x", Kind: gate.KindUpstream, Upstream: spec}, Login: "deploy"})
		var hc *ca.HostCertError
		if !errors.As(err, &hc) {
			t.Errorf("%s: %v, want a HostCertError", name, err)
		}
	}
	other := &ca.CA{Host: signer(t)}
	otherCert, _ := other.SignHost(hostKey.PublicKey(), []string{"127.0.0.1"}, "t", time.Hour)
	otherHost, _ := ssh.NewCertSigner(otherCert, hostKey)
	evil := startTarget(t, otherHost, func(ssh.PublicKey) bool { return true })
	err = login(t, b, target.Request{Target: gate.Target{Name: "evil", Kind: gate.KindUpstream, Upstream: &gate.UpstreamSpec{Addr: evil.addr}}, Login: "deploy"})
	var hc *ca.HostCertError
	if !errors.As(err, &hc) {
		t.Errorf("other host CA: %v, want a HostCertError", err)
	}
	if evil.last() != nil {
		t.Error("the gate authenticated to a target whose host certificate it refused")
	}

	// Pinned targets keep working with a CA around.
	pinned := startTarget(t, hostKey, func(ssh.PublicKey) bool { return true })
	req = target.Request{Target: gate.Target{Name: "p", Kind: gate.KindUpstream, Upstream: &gate.UpstreamSpec{Addr: pinned.addr, HostKey: sshkeys.AuthorizedLine(hostKey.PublicKey())}}, Login: "deploy"}
	if err := login(t, b, req); err != nil {
		t.Fatalf("pinned target: %v", err)
	}
}

func TestNoCAUnpinnedIsMisconfigured(t *testing.T) {
	b, _ := New(Options{GateKey: signer(t), Timeout: time.Second})
	_, err := b.Open(context.Background(), target.Request{Target: gate.Target{Name: "x", Kind: gate.KindUpstream, Upstream: &gate.UpstreamSpec{Addr: "127.0.0.1:1"}}})
	var pe *gate.PublicError
	if !errors.As(err, &pe) || !strings.Contains(pe.Public, "misconfigured") {
		t.Fatalf("%v, want a misconfigured target", err)
	}
}

// keysSeen is what the target was asked about, in order, from n on.
func (f *fakeTarget) since(n int) []ssh.PublicKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ssh.PublicKey(nil), f.seen[n:]...)
}

func (f *fakeTarget) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

// A target that does not trust the CA refuses the certificate once; from
// then on it is asked about the gate key only, and no certificate is
// signed for it. When it stops taking the gate key, the certificate is
// signed after all and, once taken, goes first again.
func TestRefusedCertificateGateKeyFirst(t *testing.T) {
	own := &ca.CA{User: signer(t), Host: signer(t)}
	trust := ca.NewTrust(t.TempDir(), own, nil)
	gateKey := signer(t)
	hostKey := signer(t)
	var logs strings.Builder
	var logMu sync.Mutex
	b, _ := New(Options{GateKey: gateKey, Timeout: 5 * time.Second, CA: trust, InwardTTL: 2 * time.Minute,
		Log: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))})
	issued := func() int {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Count(logs.String(), "login certificate issued")
	}
	isGateKey := func(k ssh.PublicKey) bool { return string(k.Marshal()) == string(gateKey.PublicKey().Marshal()) }
	var mu sync.Mutex // guards what the target takes
	gateKeyOK, certOK := true, false
	ft := startTarget(t, hostKey, func(k ssh.PublicKey) bool {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := k.(*ssh.Certificate); ok {
			return certOK
		}
		return isGateKey(k) && gateKeyOK
	})
	req := target.Request{Target: gate.Target{Name: "plain", Kind: gate.KindUpstream,
		Upstream: &gate.UpstreamSpec{Addr: ft.addr, HostKey: sshkeys.AuthorizedLine(hostKey.PublicKey())}}, Login: "deploy", ConnID: "c1"}

	// First login: certificate asked about, refused, then the gate key.
	if err := login(t, b, req); err != nil {
		t.Fatalf("first login: %v", err)
	}
	first := ft.since(0)
	if len(first) != 2 {
		t.Fatalf("first login asked about %d keys, want 2 (certificate, gate key)", len(first))
	}
	if _, ok := first[0].(*ssh.Certificate); !ok || !isGateKey(first[1]) {
		t.Fatalf("first login asked about %T then %T, want the certificate then the gate key", first[0], first[1])
	}
	if issued() != 1 || b.refused.len() != 1 {
		t.Fatalf("after the first login: %d certificates issued, %d refusals remembered; want 1 and 1", issued(), b.refused.len())
	}

	// Next logins: one query, the gate key; no certificate signed.
	for i := 0; i < 3; i++ {
		n := ft.count()
		if err := login(t, b, req); err != nil {
			t.Fatalf("login %d: %v", i+2, err)
		}
		if got := ft.since(n); len(got) != 1 || !isGateKey(got[0]) {
			t.Fatalf("login %d asked about %d keys (%v), want the gate key only", i+2, len(got), got)
		}
	}
	if issued() != 1 {
		t.Fatalf("%d certificates issued, want 1 (none after the refusal)", issued())
	}
	// Another login on the same target is not covered by the refusal.
	other := req
	other.Login = "web"
	n := ft.count()
	if err := login(t, b, other); err != nil {
		t.Fatal(err)
	}
	if got := ft.since(n); len(got) != 2 {
		t.Fatalf("another login asked about %d keys, want 2", len(got))
	}

	// The target trusts the CA now and dropped the gate key: the
	// certificate is signed after the gate key's refusal, in the same
	// login, and goes first again from the next one.
	mu.Lock()
	gateKeyOK, certOK = false, true
	mu.Unlock()
	before := issued()
	n = ft.count()
	if err := login(t, b, req); err != nil {
		t.Fatalf("login after the target started trusting the CA: %v", err)
	}
	got := ft.since(n)
	if len(got) != 2 || !isGateKey(got[0]) {
		t.Fatalf("asked about %d keys, want the gate key then the certificate", len(got))
	}
	if _, ok := got[1].(*ssh.Certificate); !ok || issued() != before+1 {
		t.Fatalf("second key %T, %d certificates issued; want a certificate issued now", got[1], issued()-before)
	}
	n = ft.count()
	if err := login(t, b, req); err != nil {
		t.Fatal(err)
	}
	if got := ft.since(n); len(got) != 1 {
		t.Fatalf("after the certificate was taken: %d keys asked about, want 1 (the certificate first)", len(got))
	} else if _, ok := got[0].(*ssh.Certificate); !ok {
		t.Fatalf("after the certificate was taken: asked about %T first, want the certificate", got[0])
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Refusals expire, and past the bound the oldest kind of entry goes first.
func TestRefusalsBoundedAndExpiring(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newRefusals()
	r.now = func() time.Time { return now }
	r.max = 3
	if !r.add("a") || r.add("a") {
		t.Fatal("add reports whether the key was new")
	}
	if !r.has("a") {
		t.Fatal("a not remembered")
	}
	now = now.Add(refusalTTL)
	if r.has("a") {
		t.Fatal("a remembered past its ttl")
	}
	for _, k := range []string{"a", "b", "c"} {
		r.add(k)
	}
	now = now.Add(time.Minute)
	r.add("d")
	if r.len() != 3 || !r.has("d") {
		t.Fatalf("%d entries, d remembered %v; want 3 and true", r.len(), r.has("d"))
	}
	// Expired entries go before live ones.
	now = now.Add(refusalTTL - 30*time.Second) // a, b, c expired; d not
	r.add("e")
	if r.len() != 2 || !r.has("d") || !r.has("e") {
		t.Fatalf("%d entries, d %v e %v; want 2, both", r.len(), r.has("d"), r.has("e"))
	}
}
