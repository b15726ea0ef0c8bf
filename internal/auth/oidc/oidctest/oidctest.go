// Package oidctest runs a real OpenID Connect provider in-process on
// 127.0.0.1 for tests: github.com/zitadel/oidc/v3's op package over a small
// in-memory storage written here, with the device authorization grant, a
// device page a test "browser" approves or denies codes on over HTTP,
// slow_down on demand, and the means to hand out tokens another provider
// signed (wrong issuer, wrong signing key) or for another audience.
//
// Must not import: any project package
package oidctest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is an account at the provider.
type User struct {
	Subject  string
	Username string // preferred_username
	Email    string
	Groups   []string
	AMR      []string // what the ID token's amr says (default pwd, otp)
}

// Options shape a provider.
type Options struct {
	ClientID     string        // default "sshgate"
	ClientSecret string        // default "s3cret-canary-0xC0FFEE" (a canary tests grep logs for)
	Lifetime     time.Duration // device code lifetime (default 2m)
	Interval     time.Duration // poll interval (default 1s, the least RFC 8628 allows in whole seconds)
	// Issuer: the issuer this provider signs as (default its own URL).
	// Set to another provider's URL to make tokens that provider's
	// clients cannot verify with its keys.
	Issuer string
	// Forward: device authorization and token requests go to this other
	// provider; discovery and keys stay this one's.
	Forward *Provider
	// Audience, when set, replaces the ID token's audience (a token for
	// another client).
	Audience string
	// Key signs the tokens (default a new ES256 key); Provider.Key shares
	// one provider's key with another.
	Key *ecdsa.PrivateKey
	// Listener to serve on (default a new one on 127.0.0.1:0).
	Listener net.Listener
}

// Provider is a running provider.
type Provider struct {
	URL    string // the issuer URL, http://127.0.0.1:PORT
	opts   Options
	st     *storage
	srv    *http.Server
	client *http.Client
}

// Start runs a provider until the test ends.
func Start(t testing.TB, o Options) *Provider {
	t.Helper()
	if o.ClientID == "" {
		o.ClientID = "sshgate"
	}
	if o.ClientSecret == "" {
		o.ClientSecret = "s3cret-canary-0xC0FFEE"
	}
	if o.Lifetime == 0 {
		o.Lifetime = 2 * time.Minute
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	p := &Provider{URL: "http://" + ln.Addr().String(), opts: o, client: &http.Client{Timeout: 10 * time.Second}}
	issuer := o.Issuer
	if issuer == "" {
		issuer = p.URL
	}
	key := o.Key
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	kid := make([]byte, 8)
	copy(kid, key.X.Bytes())
	p.st = &storage{opts: o, key: key, kid: hex.EncodeToString(kid), users: map[string]*User{},
		devices: map[string]*device{}, byUser: map[string]string{}, tokens: map[string]time.Time{}}
	var ck [32]byte
	_, _ = rand.Read(ck[:])
	prov, err := op.NewProvider(&op.Config{
		CryptoKey:             ck,
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		SupportedScopes:       []string{"openid", "profile", "email", "groups", "offline_access"},
		DeviceAuthorization:   op.DeviceAuthorizationConfig{Lifetime: o.Lifetime, PollInterval: o.Interval, UserFormPath: "/device", UserCode: op.UserCodeBase20},
		SupportedClaims:       []string{"sub", "aud", "exp", "iat", "iss", "amr", "preferred_username", "email", "groups"},
		GrantTypeRefreshToken: false,
	}, p.st, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/device", p.devicePage)
	if f := o.Forward; f != nil {
		target, _ := url.Parse(f.URL)
		rp := httputil.NewSingleHostReverseProxy(target)
		mux.Handle("/device_authorization", rp)
		mux.Handle("/oauth/token", rp)
	}
	mux.Handle("/", prov)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.srv.Shutdown(ctx)
		p.client.CloseIdleConnections()
	})
	return p
}

// Key is the provider's signing key.
func (p *Provider) Key() *ecdsa.PrivateKey { return p.st.key }

// ClientID and ClientSecret are what the gate is configured with.
func (p *Provider) ClientID() string     { return p.opts.ClientID }
func (p *Provider) ClientSecret() string { return p.opts.ClientSecret }

// AddUser adds (or replaces) an account.
func (p *Provider) AddUser(u User) {
	if u.Subject == "" {
		u.Subject = "sub-" + u.Username
	}
	if u.AMR == nil {
		u.AMR = []string{"pwd", "otp"}
	}
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.users[u.Username] = &u
}

// SetGroups changes an account's groups.
func (p *Provider) SetGroups(username string, groups ...string) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	if u := p.st.users[username]; u != nil {
		u.Groups = groups
	}
}

// SlowDown makes the next n token polls answer slow_down.
func (p *Provider) SlowDown(n int) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.slowDown = n
}

// Polls is how many token polls the provider has answered.
func (p *Provider) Polls() int {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	return p.st.polls
}

// PollTimes are the times of the token polls, in order.
func (p *Provider) PollTimes() []time.Time {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	return append([]time.Time(nil), p.st.pollTimes...)
}

// Approve is the test's browser: it signs in as username on the device
// page and approves userCode.
func (p *Provider) Approve(userCode, username string) error {
	return p.submit(userCode, username, "allow")
}

// Deny refuses userCode on the device page.
func (p *Provider) Deny(userCode string) error { return p.submit(userCode, "", "deny") }

func (p *Provider) submit(userCode, username, action string) error {
	resp, err := p.client.PostForm(p.URL+"/device", url.Values{"user_code": {userCode}, "username": {username}, "action": {action}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("device page: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// devicePage is the page a user opens at verification_uri: GET shows a
// form, POST approves or denies the code.
func (p *Provider) devicePage(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<form method="post"><input name="user_code" value="%s"><input name="username"><button name="action" value="allow">Allow</button><button name="action" value="deny">Deny</button></form>`,
			htmlEscape(r.URL.Query().Get("user_code")))
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	code := strings.ToUpper(strings.TrimSpace(r.PostForm.Get("user_code")))
	s := p.st
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[s.byUser[code]]
	if d == nil {
		http.Error(w, "unknown code", http.StatusNotFound)
		return
	}
	switch r.PostForm.Get("action") {
	case "deny":
		d.state.Denied = true
	case "allow":
		u := s.users[r.PostForm.Get("username")]
		if u == nil {
			http.Error(w, "unknown user", http.StatusForbidden)
			return
		}
		d.state.Subject, d.state.AMR, d.state.AuthTime, d.state.Done = u.Subject, u.AMR, time.Now(), true
		d.user = u.Username
	default:
		http.Error(w, "bad action", http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, "done")
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

type device struct {
	state *op.DeviceAuthorizationState
	user  string
}

// storage is the provider's in-memory state: one confidential client, the
// users, the device codes, one ES256 signing key.
type storage struct {
	opts Options
	key  *ecdsa.PrivateKey
	kid  string

	mu        sync.Mutex
	users     map[string]*User   // by username
	devices   map[string]*device // by device code
	byUser    map[string]string  // user code -> device code
	tokens    map[string]time.Time
	slowDown  int
	polls     int
	pollTimes []time.Time
}

var errNotFound = errors.New("not found")

type client struct{ o Options }

func (c client) GetID() string                       { return c.o.ClientID }
func (c client) RedirectURIs() []string              { return nil }
func (c client) PostLogoutRedirectURIs() []string    { return nil }
func (c client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c client) GrantTypes() []oidc.GrantType         { return []oidc.GrantType{oidc.GrantTypeDeviceCode} }
func (c client) LoginURL(id string) string            { return "/device?id=" + id }
func (c client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c client) IDTokenLifetime() time.Duration       { return 5 * time.Minute }
func (c client) DevMode() bool                        { return true }
func (c client) IsScopeAllowed(string) bool           { return true }
func (c client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c client) ClockSkew() time.Duration             { return 0 }
func (c client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.opts.ClientID {
		return nil, errNotFound
	}
	return client{s.opts}, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id != s.opts.ClientID || secret != s.opts.ClientSecret {
		return errors.New("invalid client")
	}
	return nil
}

func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.byUser[userCode]; dup {
		return op.ErrDuplicateUserCode
	}
	st := &op.DeviceAuthorizationState{ClientID: clientID, Scopes: scopes, Expires: expires}
	if s.opts.Audience != "" {
		st.ClientID = s.opts.Audience // the token is made for another client
	}
	s.devices[deviceCode] = &device{state: st}
	s.byUser[userCode] = deviceCode
	return nil
}

func (s *storage) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.polls++
	s.pollTimes = append(s.pollTimes, time.Now())
	d := s.devices[deviceCode]
	if d == nil {
		return nil, errNotFound
	}
	if s.slowDown > 0 {
		s.slowDown--
		return nil, context.DeadlineExceeded // the op answers slow_down
	}
	cp := *d.state
	return &cp, nil
}

func (s *storage) userBySubject(sub string) *User {
	for _, u := range s.users {
		if u.Subject == sub {
			return u
		}
	}
	return nil
}

func (s *storage) setUserinfo(info *oidc.UserInfo, subject string, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userBySubject(subject)
	if u == nil {
		return errNotFound
	}
	info.Subject = u.Subject
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeProfile:
			info.PreferredUsername = u.Username
		case oidc.ScopeEmail:
			info.Email, info.EmailVerified = u.Email, oidc.Bool(u.Email != "")
		case "groups":
			info.AppendClaims("groups", append([]string{}, u.Groups...))
		}
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return s.setUserinfo(info, req.GetSubject(), scopes)
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, _, subject, _ string) error {
	return s.setUserinfo(info, subject, []string{oidc.ScopeProfile, oidc.ScopeEmail, "groups"})
}

func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection not supported")
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return map[string]any{}, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errNotFound
}

func (s *storage) ValidateJWTProfileScopes(_ context.Context, _ string, scopes []string) ([]string, error) {
	return scopes, nil
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	exp := time.Now().Add(5 * time.Minute)
	s.mu.Lock()
	s.tokens[hex.EncodeToString(id)] = exp
	s.mu.Unlock()
	return hex.EncodeToString(id), exp, nil
}

func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, _ string) (string, string, time.Time, error) {
	id, exp, err := s.CreateAccessToken(ctx, req)
	return id, "", exp, err
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (s *storage) CreateAuthRequest(context.Context, *oidc.AuthRequest, string) (op.AuthRequest, error) {
	return nil, errors.New("authorization code flow not supported")
}
func (s *storage) AuthRequestByID(context.Context, string) (op.AuthRequest, error) {
	return nil, errNotFound
}
func (s *storage) AuthRequestByCode(context.Context, string) (op.AuthRequest, error) {
	return nil, errNotFound
}
func (s *storage) SaveAuthCode(context.Context, string, string) error     { return errNotFound }
func (s *storage) DeleteAuthRequest(context.Context, string) error        { return nil }
func (s *storage) TerminateSession(context.Context, string, string) error { return nil }
func (s *storage) RevokeToken(context.Context, string, string, string) *oidc.Error {
	return nil
}
func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}
func (s *storage) Health(context.Context) error { return nil }

type signingKey struct {
	key *ecdsa.PrivateKey
	id  string
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return signingKey{s.key, s.kid}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.ES256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{signingKey{s.key, s.kid}}}, nil
}
