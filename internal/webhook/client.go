// Package webhook is the gate's HTTP client for the operator's auth and
// config webhooks: the wire types (compatible with ContainerSSH's auth
// webhook), their strict parsers, and a client that fails closed: one total
// timeout per call, bounded retries with backoff on 5xx and connection
// errors only, no redirects, a cap on the reply size, TLS with optional
// client certificates, and a bound on concurrent calls. It imports store
// (for the docker spec it bounds) and route (Printable, for the client-chosen
// strings its errors quote), nothing else of the project.
//
// Must not import: store/... broker sshd/... relay target/... auth/... policy app
package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// MaxReply is the largest reply body read; a larger reply is an error.
const MaxReply = 64 << 10

// Config configures a Client.
type Config struct {
	URL      string        // base URL; calls POST to URL + path
	Timeout  time.Duration // total budget of one call, retries included (default 5s)
	Retries  int           // extra attempts after a 5xx or a connection error
	Backoff  time.Duration // first wait between attempts, doubled each time (default 100ms)
	CAFile   string        // PEM roots to verify the server with, instead of the system's
	CertFile string        // client certificate (PEM), with KeyFile
	KeyFile  string
	// MaxConcurrent bounds calls in flight (default 32); a call waiting for
	// a slot counts against its timeout.
	MaxConcurrent int
}

// Client posts JSON to one webhook.
type Client struct {
	base    *url.URL
	http    *http.Client
	tr      *http.Transport
	timeout time.Duration
	retries int
	backoff time.Duration
	slots   chan struct{}
}

// Errors a call can end with. All of them deny.
var (
	ErrTooLarge = errors.New("reply larger than 64 KiB")
	ErrBusy     = errors.New("too many webhook calls in flight")
)

// StatusError is a reply with a status other than 200.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return fmt.Sprintf("webhook replied HTTP %d", e.Code) }

// New returns a client for c.
func New(c Config) (*Client, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook url %q: want http(s)://HOST[/PATH]", c.URL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("webhook url: credentials in the URL are not allowed")
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Backoff <= 0 {
		c.Backoff = 100 * time.Millisecond
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 32
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("webhook ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("webhook ca_file %s: no PEM certificate found", c.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("webhook client certificate: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{
		Proxy:               nil, // the webhook is the operator's own service: no proxy from the environment
		DialContext:         (&net.Dialer{Timeout: c.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: c.Timeout,
		MaxIdleConns:        c.MaxConcurrent,
		MaxIdleConnsPerHost: c.MaxConcurrent,
		IdleConnTimeout:     60 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	hc := &http.Client{
		Transport: tr, // the call's context bounds it, body included
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is a non-200 reply: denied
		},
	}
	return &Client{base: u, http: hc, tr: tr, timeout: c.Timeout, retries: c.Retries,
		backoff: c.Backoff, slots: make(chan struct{}, c.MaxConcurrent)}, nil
}

// Close drops idle connections. Calls in flight end by their timeout.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// Timeout is the total budget of one call.
func (c *Client) Timeout() time.Duration { return c.timeout }

// Post sends body as JSON to the base URL joined with path and returns the
// body of a 200 reply. It never takes longer than the client's timeout.
func (c *Client) Post(ctx context.Context, path string, body any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode webhook request: %w", err)
	}
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		return nil, ErrBusy
	}
	target := c.base.JoinPath(path).String()
	wait := c.backoff
	for attempt := 0; ; attempt++ {
		out, err, retry := c.once(ctx, target, payload)
		if err == nil {
			return out, nil
		}
		if !retry || attempt >= c.retries || ctx.Err() != nil {
			return nil, fmt.Errorf("post %s (attempt %d): %w", path, attempt+1, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("post %s (attempt %d): %w", path, attempt+1, err)
		case <-t.C:
		}
		wait *= 2
	}
}

// once makes one attempt. retry says whether another attempt may help
// (connection errors and 5xx).
func (c *Client) once(ctx context.Context, target string, payload []byte) (_ []byte, _ error, retry bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(payload))
	if err != nil {
		return nil, err, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "sshgate")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err, ctx.Err() == nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection may be reused; never much.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, &StatusError{Code: resp.StatusCode}, resp.StatusCode >= 500
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxReply+1))
	if err != nil {
		return nil, fmt.Errorf("read reply: %w", err), false
	}
	if len(data) > MaxReply {
		return nil, ErrTooLarge, false
	}
	return data, nil, false
}

// ConfigClient asks the config webhook about a connection: POST URL/config.
type ConfigClient struct{ *Client }

// Configure posts req and parses the reply (its shape only: bounds are
// checked by Allow.Apply).
func (c ConfigClient) Configure(ctx context.Context, req ConfigRequest) (ConfigReply, error) {
	body, err := c.Post(ctx, "/config", req)
	if err != nil {
		return ConfigReply{}, err
	}
	return ParseConfigReply(body)
}
