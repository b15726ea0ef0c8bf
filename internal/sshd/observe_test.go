package sshd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

type countObserver struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *countObserver) add(k string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[k]++
}
func (o *countObserver) ConnAccepted()         { o.add("accepted") }
func (o *countObserver) ConnRejected(r string) { o.add("rejected " + r) }
func (o *countObserver) ConnEvicted(r string)  { o.add("evicted " + r) }
func (o *countObserver) Handshake(ok bool) {
	if ok {
		o.add("handshake ok")
	} else {
		o.add("handshake failed")
	}
}
func (o *countObserver) get(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[k]
}

func waitCount(t *testing.T, o *countObserver, k string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for o.get(k) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", k, o.get(k), want)
		}
		time.Sleep(10 * time.Millisecond) // bounded poll of a counter, not a wait for an event we could join
	}
}

func TestObserver(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	cfg := &ssh.ServerConfig{PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		if string(pw) == "right" {
			return loggedIn(c), nil
		}
		return nil, errors.New("denied")
	}}
	cfg.AddHostKey(signer)
	h := func(ctx context.Context, c *Conn) {
		go ssh.DiscardRequests(c.Reqs)
		for nc := range c.Chans {
			nc.Reject(ssh.Prohibited, "test")
		}
	}
	o := &countObserver{n: map[string]int{}}
	s := New(cfg, Limits{LoginGrace: 10 * time.Second, MaxUnauthenticated: 1, MaxUnauthPerSource: 1}, o, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
	addr := ln.Addr().String()

	// A silent client holds its source's only slot: the next from the same
	// source evicts it.
	a, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	waitCount(t, o, "accepted", 1)
	b, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitClosed(t, a, 10*time.Second)
	waitCount(t, o, "evicted per_source_limit", 1)
	waitCount(t, o, "accepted", 2)
	// b talks, so it holds the only slot overall: another source is rejected.
	talk(t, b)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, 10*time.Second)
	waitCount(t, o, "rejected unauthenticated_limit", 1)
	b.Close()
	waitCount(t, o, "handshake failed", 2) // a (evicted) and b
	if err := login(addr, "wrong"); err == nil {
		t.Fatal("wrong password logged in")
	}
	waitCount(t, o, "handshake failed", 3)
	if err := login(addr, "right"); err != nil {
		t.Fatal(err)
	}
	waitCount(t, o, "handshake ok", 1)
	waitCount(t, o, "accepted", 4)
}
