package ca

import (
	"crypto/rand"
	"crypto/rsa"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/sshkeys"
)

// presentedCert runs one handshake against a server presenting s and
// returns the host certificate a client asking for certificates sees.
func presentedCert(t *testing.T, s ssh.Signer, hostCA ssh.PublicKey) *ssh.Certificate {
	t.Helper()
	srv := &ssh.ServerConfig{NoClientAuth: true}
	srv.AddHostKey(s)
	// net.Pipe would deadlock: both sides send their version first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a, err := ln.Accept()
		if err != nil {
			return
		}
		if c, chans, reqs, err := ssh.NewServerConn(a, srv); err == nil {
			go ssh.DiscardRequests(reqs)
			go func() {
				for range chans {
				}
			}()
			c.Wait()
		}
		a.Close()
	}()
	var got *ssh.Certificate
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		return string(k.Marshal()) == string(hostCA.Marshal())
	}}
	cfg := &ssh.ClientConfig{User: "x", HostKeyAlgorithms: HostCertAlgorithms, HostKeyCallback: func(h string, r net.Addr, k ssh.PublicKey) error {
		got, _ = k.(*ssh.Certificate)
		return checker.CheckHostKey(h, r, k)
	}}
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, chans, reqs, err := ssh.NewClientConn(b, "gate.example:22", cfg)
	if err != nil {
		b.Close()
		wg.Wait()
		t.Fatalf("handshake: %v", err)
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		for range chans {
		}
	}()
	c.Close()
	wg.Wait()
	return got
}

func TestHostCertSignerRenews(t *testing.T) {
	c := newCA(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, _ := ssh.NewSignerFromSigner(rk)
	rsaHost, err := sshkeys.HostSigner(rsaKey) // rsa-sha2 only, as the gate runs it
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []ssh.Signer{newSigner(t), rsaHost} {
		first, _ := c.SignHost(key.PublicKey(), []string{"gate.example"}, "g", time.Hour)
		hs, err := NewHostCertSigner(first, key)
		if err != nil {
			t.Fatal(err)
		}
		if got := presentedCert(t, hs, c.Host.PublicKey()); got == nil || got.Serial != first.Serial {
			t.Fatalf("%s: presented %v, want serial %d", key.PublicKey().Type(), got, first.Serial)
		}
		second, _ := c.SignHost(key.PublicKey(), []string{"gate.example"}, "g", 2*time.Hour)
		if err := hs.Set(second, key); err != nil {
			t.Fatal(err)
		}
		if got := presentedCert(t, hs, c.Host.PublicKey()); got == nil || got.Serial != second.Serial {
			t.Fatalf("%s after renewal: presented %v, want serial %d", key.PublicKey().Type(), got, second.Serial)
		}
		if err := hs.Set(second, newSigner(t)); err == nil {
			t.Fatal("Set accepted a certificate for another key")
		}
	}
}
