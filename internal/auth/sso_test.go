package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth/oidc"
	"github.com/sshgate/sshgate/internal/auth/oidc/oidctest"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/store"
)

// ssoFake is the store for single sign-on tests (the real stores pass the
// conformance suite; the end-to-end tests run them).
type ssoFake struct {
	mu       sync.Mutex
	users    map[string]gate.User
	keys     map[string][]gate.Key
	grants   map[string][]gate.Grant
	sessions map[[3]string]gate.SSOSession
}

func newSSOFake() *ssoFake {
	return &ssoFake{users: map[string]gate.User{}, keys: map[string][]gate.Key{}, grants: map[string][]gate.Grant{},
		sessions: map[[3]string]gate.SSOSession{}}
}

func (f *ssoFake) GetUser(_ context.Context, n string) (gate.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[n]
	if !ok {
		return gate.User{}, store.ErrNotFound
	}
	return u, nil
}
func (f *ssoFake) AddUser(_ context.Context, u gate.User) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[u.Name]; ok {
		return store.ErrExists
	}
	f.users[u.Name] = u
	return nil
}
func (f *ssoFake) ListKeys(_ context.Context, u string) ([]gate.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys[u], nil
}
func (f *ssoFake) UserByUID(context.Context, int64) (gate.UserInfo, error) {
	return gate.UserInfo{}, store.ErrNotFound
}
func (f *ssoFake) SyncSSOGrants(_ context.Context, user string, want []gate.Grant) (int, int, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[user]; !ok {
		return 0, 0, 0, store.ErrNotFound
	}
	f.grants[user] = want
	return len(want), 0, 0, nil
}
func (f *ssoFake) PutSSOSession(_ context.Context, s gate.SSOSession) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions[[3]string{s.User, s.Fingerprint, s.Source}] = s
	return nil
}
func (f *ssoFake) GetSSOSession(_ context.Context, u, fp, src string) (gate.SSOSession, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[[3]string{u, fp, src}]
	if !ok {
		return gate.SSOSession{}, store.ErrNotFound
	}
	return s, nil
}

type ssoRig struct {
	t    *testing.T
	p    *oidctest.Provider
	st   *ssoFake
	a    *Authenticator
	logs *syncBuf
	cfg  *ssh.ServerConfig
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newSSORig(t *testing.T, mod func(*SSOConfig)) *ssoRig {
	p := oidctest.Start(t, oidctest.Options{})
	p.AddUser(oidctest.User{Username: "alice", Email: "alice@example.com", Groups: []string{"devs", "staff"}})
	p.AddUser(oidctest.User{Username: "mallory", Groups: []string{"staff"}})
	flow, err := oidc.New(oidc.Config{Issuer: p.URL, ClientID: p.ClientID(), ClientSecret: p.ClientSecret(),
		Scopes: []string{"openid", "profile", "email", "groups"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := newSSOFake()
	c := SSOConfig{Flow: flow, Store: st, UserClaim: "preferred_username", GroupsClaim: "groups",
		AutoProvision: true, Reuse: time.Hour, ManageGrants: true,
		Grants: []SSOGrant{{Group: "devs", Env: "dev"}, {Group: "ops", Target: "db-1", Forwarding: true}}, LoginTimeout: time.Minute}
	if mod != nil {
		mod(&c)
	}
	logs := &syncBuf{}
	a := New(Deps{Users: st, Log: slog.New(slog.NewTextHandler(logs, nil)), SSO: &c})
	cfg := &ssh.ServerConfig{}
	a.Install(cfg)
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	hs, _ := ssh.NewSignerFromKey(hk)
	cfg.AddHostKey(hs)
	rig := ssrRig(t, p, st, a, logs, cfg)
	return &rig
}

func ssrRig(t *testing.T, p *oidctest.Provider, st *ssoFake, a *Authenticator, logs *syncBuf, cfg *ssh.ServerConfig) ssoRig {
	return ssoRig{t: t, p: p, st: st, a: a, logs: logs, cfg: cfg}
}

var codeRe = regexp.MustCompile(`enter the code ([A-Z0-9-]+)`)

// browser approves (as who) or denies (who "") the code in a prompt.
func (r *ssoRig) browser(who string, prompts *int) ssh.KeyboardInteractiveChallenge {
	return func(_, _ string, qs []string, _ []bool) ([]string, error) {
		if len(qs) == 0 {
			return nil, nil
		}
		*prompts++
		m := codeRe.FindStringSubmatch(qs[0])
		if m == nil {
			return nil, errors.New("no code in prompt: " + qs[0])
		}
		var err error
		if who == "" {
			err = r.p.Deny(m[1])
		} else {
			err = r.p.Approve(m[1], who)
		}
		if err != nil {
			return nil, err
		}
		return []string{""}, nil
	}
}

// login connects as user with signer (nil: none), answering prompts with
// ki; it returns the server's session or the client's error.
func (r *ssoRig) login(user string, signer ssh.Signer, ki ssh.KeyboardInteractiveChallenge) (*gate.Session, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	defer ln.Close()
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		r.t.Fatal(err)
	}
	defer c2.Close()
	c1, err := ln.Accept()
	if err != nil {
		r.t.Fatal(err)
	}
	defer c1.Close()
	type res struct {
		s   *gate.Session
		err error
	}
	done := make(chan res, 1)
	go func() {
		sc, chans, reqs, err := ssh.NewServerConn(c1, r.cfg)
		if err != nil {
			done <- res{nil, err}
			return
		}
		go ssh.DiscardRequests(reqs)
		go func() {
			for ch := range chans {
				ch.Reject(ssh.Prohibited, "")
			}
		}()
		done <- res{gate.SessionOf(sc.Permissions.ExtraData), nil}
		sc.Close()
	}()
	var methods []ssh.AuthMethod
	if signer != nil {
		methods = append(methods, ssh.PublicKeys(signer))
	}
	methods = append(methods, ssh.RetryableAuthMethod(ssh.KeyboardInteractive(ki), 3))
	cc, _, _, err := ssh.NewClientConn(c2, "pipe", &ssh.ClientConfig{User: user, Auth: methods, HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		c2.Close()
		<-done
		return nil, err
	}
	defer cc.Close()
	got := <-done
	return got.s, got.err
}

func signer(t *testing.T) ssh.Signer {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSSODeviceLoginThenReuse(t *testing.T) {
	r := newSSORig(t, nil)
	key := signer(t)
	prompts := 0
	s, err := r.login("alice", key, r.browser("alice", &prompts))
	if err != nil {
		t.Fatal(err)
	}
	if prompts != 1 || s.Identity.User != "alice" || s.Identity.Method != MethodOIDC || s.Identity.Fingerprint != sshkeys.Fingerprint(key.PublicKey()) {
		t.Fatalf("session = %+v after %d prompts", s.Identity, prompts)
	}
	if s.SSO == nil || s.SSO.Subject != "sub-alice" || s.SSO.Reused || strings.Join(s.SSO.AMR, ",") != "pwd,otp" ||
		s.SSO.PublicKey != sshkeys.AuthorizedLine(key.PublicKey()) || s.SSO.Source != "127.0.0.1/32" || s.SSO.Expires.IsZero() {
		t.Fatalf("sso = %+v", s.SSO)
	}
	if _, err := r.st.GetUser(context.Background(), "alice"); err != nil {
		t.Fatalf("alice was not provisioned: %v", err)
	}
	if g := r.st.grants["alice"]; len(g) != 1 || g[0].Env != "dev" {
		t.Fatalf("grants = %+v", g)
	}
	if u, _ := r.st.GetUser(context.Background(), "alice"); u.PasswordHash != "" || len(r.st.keys["alice"]) != 0 {
		t.Fatal("a provisioned user got a password or a key")
	}
	// The same key again: the reuse window, no prompt.
	prompts = 0
	s, err = r.login("alice", key, r.browser("alice", &prompts))
	if err != nil || prompts != 0 || s.SSO == nil || !s.SSO.Reused || s.SSO.Subject != "sub-alice" {
		t.Fatalf("reuse: %v, %d prompts, %+v", err, prompts, s)
	}
	// Another key: a new sign-in.
	if _, err := r.login("alice", signer(t), r.browser("alice", &prompts)); err != nil || prompts != 1 {
		t.Fatalf("other key: %v, %d prompts", err, prompts)
	}
	// The window expires.
	r.a.sso.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	prompts = 0
	if s, err := r.login("alice", key, r.browser("alice", &prompts)); err != nil || prompts != 1 || s.SSO.Reused {
		t.Fatalf("after expiry: %v, %d prompts", err, prompts)
	}
	// Groups changed at the provider: the grants follow at the next sign-in.
	r.p.SetGroups("alice", "ops")
	r.a.sso.now = func() time.Time { return time.Now().Add(4 * time.Hour) }
	if _, err := r.login("alice", key, r.browser("alice", &prompts)); err != nil {
		t.Fatal(err)
	}
	if g := r.st.grants["alice"]; len(g) != 1 || g[0].Target != "db-1" || !g[0].Forwarding {
		t.Fatalf("grants after the group change = %+v", g)
	}
	// Without a key: keyboard-interactive alone, no reuse window.
	prompts = 0
	s, err = r.login("alice", nil, r.browser("alice", &prompts))
	if err != nil || prompts != 1 || s.Identity.Fingerprint != "" || s.SSO.PublicKey != "" || s.SSO.Source != "" {
		t.Fatalf("keyless: %v, %+v", err, s)
	}
	if logs := r.logs.String(); strings.Contains(logs, r.p.ClientSecret()) || strings.Contains(logs, "eyJ") {
		t.Fatalf("a secret or a token in the log:\n%s", logs)
	}
}

func TestSSOFailures(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*SSOConfig)
		user    string
		who     string // "" denies
		wantLog string
	}{
		{"denied", nil, "alice", "", "reason=denied"},
		{"other user", nil, "alice", "mallory", "reason=user_mismatch"},
		{"group not allowed", func(c *SSOConfig) { c.AllowedGroups = []string{"admins"} }, "alice", "alice", "reason=group_not_allowed"},
		{"domain not allowed", func(c *SSOConfig) { c.AllowedDomains = []string{"example.org"} }, "alice", "alice", "reason=domain_not_allowed"},
		{"no account", func(c *SSOConfig) { c.AutoProvision = false }, "alice", "alice", "reason=no_account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSSORig(t, tt.mod)
			prompts := 0
			var banners []string
			_ = banners
			_, err := r.login(tt.user, signer(t), r.browser(tt.who, &prompts))
			if err == nil {
				t.Fatal("login succeeded")
			}
			if prompts != 1 {
				t.Fatalf("%d prompts, want 1 (no second browser trip on one connection)", prompts)
			}
			if !strings.Contains(r.logs.String(), tt.wantLog) || !strings.Contains(r.logs.String(), "ref=") {
				t.Fatalf("log lacks %q:\n%s", tt.wantLog, r.logs.String())
			}
			if len(r.st.sessions) != 0 {
				t.Fatal("a failed sign-in opened a reuse window")
			}
		})
	}
}

// A user with a key on the gate is not offered single sign-on for another
// key unless the operator offers it to everyone.
func TestSSOOffer(t *testing.T) {
	for _, all := range []bool{false, true} {
		r := newSSORig(t, func(c *SSOConfig) { c.OfferAll = all })
		r.st.users["alice"] = gate.User{Name: "alice"}
		r.st.keys["alice"] = []gate.Key{{User: "alice", AuthorizedKey: sshkeys.AuthorizedLine(signer(t).PublicKey())}}
		prompts := 0
		_, err := r.login("alice", signer(t), r.browser("alice", &prompts))
		if all && (err != nil || prompts != 1) {
			t.Fatalf("offer all: %v, %d prompts", err, prompts)
		}
		// Not offered: keyboard-interactive asks for a password instead,
		// never for a device sign-in.
		if !all && (err == nil || prompts != 1 || !strings.Contains(err.Error(), "no code in prompt: Password: ")) {
			t.Fatalf("offer unregistered: %v, %d prompts", err, prompts)
		}
	}
}
