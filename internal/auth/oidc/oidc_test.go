package oidc_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/auth/oidc"
	"github.com/sshgate/sshgate/internal/auth/oidc/oidctest"
)

func client(t *testing.T, p *oidctest.Provider, issuer string) *oidc.Client {
	t.Helper()
	if issuer == "" {
		issuer = p.URL
	}
	c, err := oidc.New(oidc.Config{Issuer: issuer, ClientID: p.ClientID(), ClientSecret: p.ClientSecret(),
		Scopes: []string{"openid", "profile", "email", "groups"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// login begins a device login and lets act play the browser.
func login(t *testing.T, c *oidc.Client, act func(d *oidc.Device)) (*oidc.Identity, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, err := c.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if act != nil {
		act(d)
	}
	return c.Wait(ctx, d)
}

func TestDeviceLogin(t *testing.T) {
	p := oidctest.Start(t, oidctest.Options{})
	p.AddUser(oidctest.User{Username: "alice", Email: "alice@example.com", Groups: []string{"devs", "staff"}})
	c := client(t, p, "")
	id, err := login(t, c, func(d *oidc.Device) {
		if !strings.HasPrefix(d.VerificationURI, p.URL) || d.UserCode == "" || !strings.Contains(d.VerificationURIComplete, d.UserCode) {
			t.Errorf("device = %+v", d)
		}
		if err := p.Approve(d.UserCode, "alice"); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "sub-alice" || id.Issuer != p.URL || id.Claims["preferred_username"] != "alice" ||
		strings.Join(oidc.StringList(id.Claims["groups"]), ",") != "devs,staff" || strings.Join(id.AMR, ",") != "pwd,otp" {
		t.Fatalf("identity = %+v", id)
	}
}

func TestDeviceLoginFailures(t *testing.T) {
	good := oidctest.Start(t, oidctest.Options{})
	good.AddUser(oidctest.User{Username: "alice"})
	// A provider signing as good's issuer with its own key (a forged
	// token), and good forwarding its token endpoint there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	forger := oidctest.Start(t, oidctest.Options{Issuer: "http://" + ln.Addr().String()})
	forger.AddUser(oidctest.User{Username: "alice"})
	badKey := oidctest.Start(t, oidctest.Options{Listener: ln, Forward: forger})
	// Tokens from another issuer entirely, behind good-looking discovery.
	other := oidctest.Start(t, oidctest.Options{})
	other.AddUser(oidctest.User{Username: "alice"})
	badIssuer := oidctest.Start(t, oidctest.Options{Forward: other, Key: other.Key()})
	badAud := oidctest.Start(t, oidctest.Options{Audience: "someone-else"})
	badAud.AddUser(oidctest.User{Username: "alice"})
	short := oidctest.Start(t, oidctest.Options{Lifetime: 2 * time.Second})
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String()
	dead.Close()

	tests := []struct {
		name    string
		c       *oidc.Client
		act     func(d *oidc.Device)
		kind    oidc.Kind
		wantMsg string
	}{
		{"denied", client(t, good, ""), func(d *oidc.Device) { _ = good.Deny(d.UserCode) }, oidc.KindDenied, "access_denied"},
		{"expired", client(t, short, ""), nil, oidc.KindExpired, ""},
		{"wrong signing key", client(t, badKey, ""), func(d *oidc.Device) { _ = forger.Approve(d.UserCode, "alice") }, oidc.KindInvalidToken, "signature"},
		{"wrong issuer", client(t, badIssuer, ""), func(d *oidc.Device) { _ = other.Approve(d.UserCode, "alice") }, oidc.KindInvalidToken, "different provider"},
		{"wrong audience", client(t, badAud, ""), func(d *oidc.Device) { _ = badAud.Approve(d.UserCode, "alice") }, oidc.KindInvalidToken, "audience"},
		{"unreachable", client(t, good, deadURL), nil, oidc.KindUnreachable, "discovery"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := login(t, tt.c, tt.act)
			if oidc.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v (kind %v), want kind %v with %q", err, oidc.KindOf(err), tt.kind, tt.wantMsg)
			}
			if strings.Contains(err.Error(), good.ClientSecret()) {
				t.Fatalf("error carries the client secret: %v", err)
			}
		})
	}
}

// slow_down: the client waits 5 s more between polls (RFC 8628 3.5).
func TestDeviceLoginSlowDown(t *testing.T) {
	p := oidctest.Start(t, oidctest.Options{})
	p.AddUser(oidctest.User{Username: "alice"})
	p.SlowDown(1)
	c := client(t, p, "")
	_, err := login(t, c, func(d *oidc.Device) { _ = p.Approve(d.UserCode, "alice") })
	if err != nil {
		t.Fatal(err)
	}
	times := p.PollTimes()
	if len(times) != 2 {
		t.Fatalf("polls = %d, want 2 (slow_down, then the token)", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < 5900*time.Millisecond {
		t.Fatalf("poll after slow_down came %s later, want the interval + 5s", gap)
	}
}

// Cancelling (the SSH client left) ends the wait at once.
func TestDeviceLoginCancelled(t *testing.T) {
	p := oidctest.Start(t, oidctest.Options{})
	c := client(t, p, "")
	ctx, cancel := context.WithCancel(context.Background())
	d, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := c.Wait(ctx, d); oidc.KindOf(err) != oidc.KindCancelled {
		t.Fatalf("err = %v", err)
	}
}
