package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/webhook"
)

// fakeHook is a webhook answering reply (or err) and recording requests.
type fakeHook struct {
	mu    sync.Mutex
	reply string
	err   error
	calls []string // paths
	reqs  []webhook.AuthRequest
}

func (f *fakeHook) Post(_ context.Context, path string, body any) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, path)
	f.reqs = append(f.reqs, body.(webhook.AuthRequest))
	return []byte(f.reply), f.err
}

func (f *fakeHook) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

const carolReply = `{"success":true,"authenticatedUsername":"carol2",
 "metadata":{"team":{"value":"ops","sensitive":false},"secret":{"value":"s3","sensitive":true}},
 "environment":{"WEBHOOK_TOKEN":{"value":"tok","sensitive":true},"WEBHOOK_TEAM":{"value":"ops"}}}`

func TestWebhookPassword(t *testing.T) {
	tests := []struct {
		name     string
		mode     string
		user     string
		pw       string
		reply    string
		hookErr  error
		wantUser string // "" = denied
		calls    int
	}{
		{name: "fallback: local user stays local", mode: "fallback", user: "alice", pw: "alice-pw", reply: `{"success":false}`, wantUser: "alice", calls: 0},
		{name: "fallback: local user wrong password, no webhook", mode: "fallback", user: "alice", pw: "nope", reply: `{"success":true}`, calls: 0},
		{name: "fallback: local user without password to webhook", mode: "fallback", user: "bob", pw: "pw", reply: `{"success":true}`, wantUser: "bob", calls: 1},
		{name: "fallback: unknown user to webhook", mode: "fallback", user: "carol+web-1", pw: "pw", reply: carolReply, wantUser: "carol2", calls: 1},
		{name: "only: local user goes to webhook", mode: "only", user: "alice", pw: "alice-pw", reply: `{"success":false}`, calls: 1},
		{name: "only: webhook says yes", mode: "only", user: "alice", pw: "x", reply: `{"success":true}`, wantUser: "alice", calls: 1},
		{name: "webhook error denies", mode: "only", user: "carol", pw: "x", hookErr: errors.New("HTTP 503"), calls: 1},
		{name: "malformed reply denies", mode: "only", user: "carol", pw: "x", reply: `{"success":"yes"}`, calls: 1},
		{name: "invalid authenticated name denies", mode: "only", user: "carol", pw: "x", reply: `{"success":true,"authenticatedUsername":"Root;id"}`, calls: 1},
		{name: "invalid ssh user never reaches webhook", mode: "only", user: "../x", pw: "x", reply: `{"success":true}`, calls: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _, _ := setup(t)
			h := &fakeHook{reply: tt.reply, err: tt.hookErr}
			a.hook = &authHook{client: h, only: tt.mode == "only"}
			p, err := a.Password(meta{tt.user}, []byte(tt.pw))
			if h.count() != tt.calls {
				t.Errorf("webhook calls %d, want %d", h.count(), tt.calls)
			}
			if tt.wantUser == "" {
				if err == nil {
					t.Fatalf("login passed: %v", p.Extensions)
				}
				return
			}
			if err != nil {
				t.Fatalf("denied: %v", err)
			}
			id, err := gate.IdentityFromExtensions(p.Extensions)
			if err != nil || id.User != tt.wantUser || id.Method != "password" {
				t.Fatalf("identity %+v, %v", id, err)
			}
			if tt.calls == 1 {
				r := h.reqs[0]
				pw, _ := base64.StdEncoding.DecodeString(r.PasswordBase64)
				if h.calls[0] != "/password" || string(pw) != tt.pw || r.Username != strings.Split(tt.user, "+")[0] || r.PublicKey != "" || r.RemoteAddress != "127.0.0.1:1" {
					t.Errorf("request %s %+v", h.calls[0], r)
				}
			}
		})
	}
}

func TestWebhookAttrs(t *testing.T) {
	a, _, _ := setup(t)
	a.hook = &authHook{client: &fakeHook{reply: carolReply}, only: "fallback" == "only"}
	p, err := a.Password(meta{"carol"}, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	env, md := webhookAttrs(p)
	if env["WEBHOOK_TOKEN"] != "tok" || env["WEBHOOK_TEAM"] != "ops" || len(env) != 2 {
		t.Errorf("env %v", env)
	}
	if md["team"] != "ops" || len(md) != 1 {
		t.Errorf("metadata %v (sensitive entries must be dropped)", md)
	}
	for k, v := range p.Extensions {
		if strings.Contains(v, "s3") && k != ExtWebhookEnv {
			t.Errorf("sensitive metadata kept in %s", k)
		}
	}
	// A local login carries none of it.
	a2, _, _ := setup(t)
	p2, err := a2.Password(meta{"alice"}, []byte("alice-pw"))
	if err != nil {
		t.Fatal(err)
	}
	if env, md := webhookAttrs(p2); env != nil || md != nil {
		t.Errorf("local login has webhook attrs %v %v", env, md)
	}
}

func TestWebhookPublicKey(t *testing.T) {
	a, alice, _ := setup(t)
	h := &fakeHook{reply: `{"success":true,"environment":{"WEBHOOK_X":{"value":"1"}}}`}
	a.hook = &authHook{client: h, only: "fallback" == "only"}
	carolKey, other := newKey(t), newKey(t)

	// The query ("may this key be tried") asks no webhook and grants nothing.
	p, err := a.PublicKey(meta{"carol+web-1"}, carolKey)
	if err != nil {
		t.Fatal(err)
	}
	if h.count() != 0 {
		t.Errorf("webhook called %d times for an unsigned query", h.count())
	}
	if _, err := gate.IdentityFromExtensions(p.Extensions); err == nil {
		t.Fatal("PublicKey's permissions read as an identity")
	}
	// Another key with these permissions is refused, without a webhook call.
	if _, err := a.VerifiedPublicKey(meta{"carol+web-1"}, other, p, ""); err == nil {
		t.Error("verified with a different key")
	}
	// Another user with these permissions is refused.
	if _, err := a.VerifiedPublicKey(meta{"dave"}, carolKey, p, ""); err == nil {
		t.Error("verified for a different user")
	}
	if h.count() != 0 {
		t.Errorf("webhook called %d times", h.count())
	}
	vp, err := a.VerifiedPublicKey(meta{"carol+web-1"}, carolKey, p, "")
	if err != nil {
		t.Fatal(err)
	}
	id, err := gate.IdentityFromExtensions(vp.Extensions)
	if err != nil || id.User != "carol" || id.Method != "publickey" || id.Fingerprint != sshkeys.Fingerprint(carolKey) {
		t.Fatalf("identity %+v %v", id, err)
	}
	if h.count() != 1 || h.calls[0] != "/pubkey" || h.reqs[0].PublicKey != strings.TrimSpace(string(ssh.MarshalAuthorizedKey(carolKey))) || h.reqs[0].PasswordBase64 != "" {
		t.Errorf("calls %v reqs %+v", h.calls, h.reqs)
	}

	// fallback: a local user without keys (here, one holding grants only) may use the webhook.
	a.users.(*fakeUsers).users["erin"] = gate.User{Name: "erin"}
	if _, err := a.PublicKey(meta{"erin"}, other); err != nil {
		t.Errorf("local user without keys: %v", err)
	}
	// fallback: a local user's unknown key is not offered to the webhook.
	if _, err := a.PublicKey(meta{"alice"}, other); err == nil {
		t.Error("local user's unknown key accepted for trying")
	}
	// Local keys still work.
	if _, err := a.PublicKey(meta{"alice"}, alice); err != nil {
		t.Error(err)
	}
	// only: every key goes to the webhook, which may say no.
	a.hook = &authHook{client: &fakeHook{reply: `{"success":false}`}, only: "only" == "only"}
	p, err = a.PublicKey(meta{"alice"}, alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.VerifiedPublicKey(meta{"alice"}, alice, p, ""); err == nil {
		t.Error("only mode: webhook said no, login passed")
	}
}

// TestWebhookAmplification: a client offering many keys on one connection
// costs at most MaxAuthTries webhook calls (one per signature, never one per
// query), over a real x/crypto handshake.
func TestWebhookAmplification(t *testing.T) {
	a, _, _ := setup(t)
	h := &fakeHook{reply: `{"success":false}`}
	a.hook = &authHook{client: h, only: "only" == "only"}
	a.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	hostPub, hostPriv, _ := ed25519Key(t)
	_ = hostPub
	sc := &ssh.ServerConfig{MaxAuthTries: 3}
	sc.AddHostKey(hostPriv)
	a.Install(sc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _, _, _ = ssh.NewServerConn(c, sc)
	}()
	var signers []ssh.Signer
	for i := 0; i < 20; i++ {
		_, s, _ := ed25519Key(t)
		signers = append(signers, s)
	}
	cc := &ssh.ClientConfig{User: "carol", Auth: []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey()} // test client against an in-process server
	c, err := ssh.Dial("tcp", ln.Addr().String(), cc)
	if err == nil {
		c.Close()
		t.Fatal("login passed")
	}
	<-done
	if n := h.count(); n > 3 {
		t.Errorf("%d webhook calls for one connection with MaxAuthTries 3", n)
	}
	b, _ := json.Marshal(h.calls)
	t.Logf("webhook calls: %s", b)
}

func ed25519Key(t *testing.T) (ssh.PublicKey, ssh.Signer, error) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey(), s, nil
}

// TestWebhookOverHTTP drives the password callback against a real HTTP
// server through the real client: every bad reply denies, within the
// budget, and no goroutine outlives the test.
func TestWebhookOverHTTP(t *testing.T) {
	before := runtime.NumGoroutine()
	var calls atomic.Int32
	tests := []struct {
		name    string
		handler func(n int32, w http.ResponseWriter, r *http.Request)
		ok      bool
	}{
		{"success", func(_ int32, w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"success":true}`) }, true},
		{"5xx then success", func(n int32, w http.ResponseWriter, _ *http.Request) {
			if n == 1 {
				http.Error(w, "busy", 502)
				return
			}
			_, _ = io.WriteString(w, `{"success":true}`)
		}, true},
		{"malformed JSON", func(_ int32, w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"success":true,`) }, false},
		{"HTML error page", func(_ int32, w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `<html>ok</html>`) }, false},
		{"huge body", func(_ int32, w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"success":true,"metadata":{"a":{"value":"`+strings.Repeat("x", 70<<10)+`"}}}`)
		}, false},
		{"hang", func(_ int32, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, false},
		{"always 500", func(_ int32, w http.ResponseWriter, _ *http.Request) { http.Error(w, "x", 500) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls.Store(0)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				tt.handler(calls.Add(1), w, r)
			}))
			defer srv.Close()
			c, err := webhook.New(webhook.Config{URL: srv.URL, Timeout: 500 * time.Millisecond, Retries: 1, Backoff: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			a, _, _ := setup(t)
			a.hook = &authHook{client: c, only: "only" == "only"}
			start := time.Now()
			_, err = a.Password(meta{"carol"}, []byte("pw"))
			if (err == nil) != tt.ok {
				t.Errorf("err %v, want ok %v", err, tt.ok)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %s with a 500ms budget", took)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // bounded poll for exiting goroutines
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines: %d before, %d after", before, n)
	}
}
