// Package oidc is the gate's client of an OpenID Connect provider for the
// OAuth 2.0 device authorization grant (RFC 8628): discovery, the device
// authorization request, polite polling of the token endpoint (interval,
// slow_down, expiry) through golang.org/x/oauth2, and verification of the
// ID token (issuer, audience, expiry, signature through the provider's JWKS)
// through github.com/coreos/go-oidc/v3. It knows nothing of SSH or of gate
// users: package auth maps what it returns.
//
// Errors are typed (*Error with a Kind) so that callers choose what a user
// reads; no token, device code or client secret is ever part of an error's
// text.
//
// Must not import: any project package
package oidc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Config is how the gate reaches its provider.
type Config struct {
	Issuer       string
	ClientID     string
	ClientSecret string // "" for a public client
	Scopes       []string
	Timeout      time.Duration // one HTTP call
	CAFile       string        // PEM roots for the provider's TLS ("" = the system's)
}

// Kind says what went wrong, for the one line a user reads.
type Kind int

const (
	KindUnreachable  Kind = iota + 1 // the provider did not answer, or answered nonsense
	KindDenied                       // the user (or the provider) refused the sign-in
	KindExpired                      // the code expired before it was approved
	KindInvalidToken                 // the ID token failed verification (issuer, audience, signature, expiry)
	KindCancelled                    // the SSH client went away or the login budget ran out
)

func (k Kind) String() string {
	switch k {
	case KindUnreachable:
		return "provider unreachable"
	case KindDenied:
		return "denied"
	case KindExpired:
		return "code expired"
	case KindInvalidToken:
		return "invalid id token"
	case KindCancelled:
		return "cancelled"
	}
	return "unknown"
}

// Error is a failure of the device flow. Err never holds a token, a device
// code or the client secret.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Kind.String() + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// KindOf is the Kind of err (0 when it is not an *Error).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// Client runs device logins against one provider. Discovery happens at
// the first login (and again after a failure), so a gate starts while its
// provider is down.
type Client struct {
	cfg  Config
	http *http.Client

	mu       sync.Mutex
	provider *gooidc.Provider
	verifier *gooidc.IDTokenVerifier
	oauth    *oauth2.Config
}

// New returns a Client; it reads the CA file but does not contact the provider.
func New(cfg Config) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the provider is reached directly, never through $HTTPS_PROXY by surprise
	tr.DialContext = (&net.Dialer{Timeout: cfg.Timeout}).DialContext
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read oidc ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("oidc ca_file %s: no PEM certificate", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{cfg: cfg, http: &http.Client{Transport: tr, Timeout: cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

func (c *Client) ctx(ctx context.Context) context.Context {
	return context.WithValue(gooidc.ClientContext(ctx, c.http), oauth2.HTTPClient, c.http)
}

// discover returns the provider's endpoints and verifier, fetching the
// discovery document once.
func (c *Client) discover(ctx context.Context) (*oauth2.Config, *gooidc.IDTokenVerifier, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.oauth != nil {
		return c.oauth, c.verifier, nil
	}
	// The provider keeps the context it was made with for its key set
	// fetches: a long-lived one, bounded per call by the HTTP client.
	dctx, cancel := context.WithTimeout(c.ctx(ctx), c.cfg.Timeout)
	defer cancel()
	doc, err := gooidc.NewProvider(dctx, c.cfg.Issuer)
	if err != nil {
		return nil, nil, &Error{KindUnreachable, fmt.Errorf("discovery at %s: %w", c.cfg.Issuer, err)}
	}
	// A provider made with dctx would fetch keys with a cancelled context:
	// build the verifier over a key set of its own.
	var claims struct {
		JWKS  string   `json:"jwks_uri"`
		Algs  []string `json:"id_token_signing_alg_values_supported"`
		Auths []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := doc.Claims(&claims); err != nil || claims.JWKS == "" {
		return nil, nil, &Error{KindUnreachable, errors.New("discovery document has no jwks_uri")}
	}
	keys := gooidc.NewRemoteKeySet(c.ctx(context.Background()), claims.JWKS)
	ep := doc.Endpoint()
	// One way of presenting the secret, chosen from what the provider says
	// (oauth2's auto-detection would switch ways after an ordinary
	// slow_down reply and keep the wrong one).
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if len(claims.Auths) > 0 && !contains(claims.Auths, "client_secret_basic") && contains(claims.Auths, "client_secret_post") {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	if ep.DeviceAuthURL == "" {
		return nil, nil, &Error{KindUnreachable, errors.New("provider offers no device_authorization_endpoint")}
	}
	c.provider = doc
	c.verifier = gooidc.NewVerifier(c.cfg.Issuer, keys, &gooidc.Config{ClientID: c.cfg.ClientID, SupportedSigningAlgs: supportedAlgs(claims.Algs)})
	c.oauth = &oauth2.Config{ClientID: c.cfg.ClientID, ClientSecret: c.cfg.ClientSecret, Endpoint: ep, Scopes: c.cfg.Scopes}
	return c.oauth, c.verifier, nil
}

// supportedAlgs keeps the asymmetric algorithms the provider names (never
// "none" or HMAC, which would make the client secret a signing key).
func supportedAlgs(offered []string) []string {
	ok := map[string]bool{gooidc.RS256: true, gooidc.RS384: true, gooidc.RS512: true, gooidc.ES256: true,
		gooidc.ES384: true, gooidc.ES512: true, gooidc.PS256: true, gooidc.PS384: true, gooidc.PS512: true, gooidc.EdDSA: true}
	var out []string
	for _, a := range offered {
		if ok[a] {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return []string{gooidc.RS256}
	}
	return out
}

// Device is a started device login: what the user is shown.
type Device struct {
	VerificationURI         string
	VerificationURIComplete string // "" when the provider gave none
	UserCode                string
	Expires                 time.Time
	resp                    *oauth2.DeviceAuthResponse
}

// Begin asks the provider for a device code.
func (c *Client) Begin(ctx context.Context) (*Device, error) {
	oc, _, err := c.discover(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(c.ctx(ctx), c.cfg.Timeout)
	defer cancel()
	da, err := oc.DeviceAuth(cctx)
	if err != nil {
		return nil, classify("device authorization", err)
	}
	if da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return nil, &Error{KindUnreachable, errors.New("device authorization reply lacks device_code, user_code or verification_uri")}
	}
	d := &Device{VerificationURI: da.VerificationURI, VerificationURIComplete: da.VerificationURIComplete,
		UserCode: da.UserCode, Expires: da.Expiry, resp: da}
	if d.Expires.IsZero() {
		d.Expires = time.Now().Add(5 * time.Minute)
		da.Expiry = d.Expires
	}
	return d, nil
}

// Identity is what a verified ID token says.
type Identity struct {
	Issuer  string
	Subject string
	AMR     []string
	Expiry  time.Time
	Claims  map[string]any // every claim of the ID token, for the caller's mapping
}

// Wait polls the token endpoint for d until the user approves, denies, the
// code expires or ctx ends, and verifies the ID token it gets.
func (c *Client) Wait(ctx context.Context, d *Device) (*Identity, error) {
	oc, verifier, err := c.discover(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := oc.DeviceAccessToken(c.ctx(ctx), d.resp)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &Error{KindCancelled, errors.New("the login ended before the sign-in completed")}
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &Error{KindExpired, errors.New("the code expired before it was approved")}
		}
		return nil, classify("device access token", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, &Error{KindInvalidToken, errors.New("token reply has no id_token (is the openid scope allowed?)")}
	}
	vctx, cancel := context.WithTimeout(c.ctx(ctx), c.cfg.Timeout)
	defer cancel()
	idt, err := verifier.Verify(vctx, raw)
	if err != nil {
		return nil, &Error{KindInvalidToken, fmt.Errorf("verify id token: %s", scrub(err.Error(), raw))}
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, &Error{KindInvalidToken, errors.New("id token claims are not a JSON object")}
	}
	return &Identity{Issuer: idt.Issuer, Subject: idt.Subject, AMR: stringList(claims["amr"]), Expiry: idt.Expiry, Claims: claims}, nil
}

// classify turns an oauth2 error into an *Error; the provider's error code
// and description are kept (they carry no secret), the body is not.
func classify(op string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		code := re.ErrorCode
		msg := fmt.Sprintf("%s: provider said %q", op, printable(code, 64))
		if re.ErrorDescription != "" {
			msg += fmt.Sprintf(" (%s)", printable(re.ErrorDescription, 200))
		}
		switch code {
		case "access_denied":
			return &Error{KindDenied, errors.New(msg)}
		case "expired_token":
			return &Error{KindExpired, errors.New(msg)}
		}
		if re.Response != nil && code == "" {
			msg = fmt.Sprintf("%s: HTTP %d", op, re.Response.StatusCode)
		}
		return &Error{KindUnreachable, errors.New(msg)}
	}
	// Transport errors name the URL, never a form body.
	return &Error{KindUnreachable, fmt.Errorf("%s: %w", op, err)}
}

// scrub removes the raw token from a message (go-oidc does not quote it,
// but a message must never carry it).
func scrub(msg, token string) string {
	if token != "" {
		msg = strings.ReplaceAll(msg, token, "[token]")
	}
	return printable(msg, 300)
}

func printable(s string, max int) string {
	out := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s) && len(out) < max; i++ {
		ch := s[i]
		if ch < 0x20 || ch > 0x7e {
			ch = '?'
		}
		out = append(out, ch)
	}
	return string(out)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// stringList reads a claim that is a string or a list of strings.
func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil
		}
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// StringList reads a claim that is a string or a list of strings (the
// groups claim comes in both forms).
func StringList(v any) []string { return stringList(v) }
