package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// noLeak fails the test if goroutines started during it are still running
// once it ends (after a bounded wait for them to finish).
func noLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			runtime.Gosched()
			time.Sleep(10 * time.Millisecond) // a bounded poll, not a wait for an event
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf)
		}
	})
}

func newClient(t *testing.T, c Config) *Client {
	t.Helper()
	cl, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func TestClientPost(t *testing.T) {
	okReply := `{"success":true,"authenticatedUsername":"alice"}`
	tests := []struct {
		name    string
		handler func(calls int32, w http.ResponseWriter, r *http.Request)
		retries int
		wantErr string // "" for success
		calls   int32  // attempts the server should see (0: don't check)
		maxTime time.Duration
	}{
		{name: "ok", calls: 1, handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
			var req AuthRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Username != "alice" || r.URL.Path != "/base/password" {
				http.Error(w, "bad request", 400)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(okReply))
		}},
		{name: "5xx then success", retries: 2, calls: 3, handler: func(n int32, w http.ResponseWriter, r *http.Request) {
			if n < 3 {
				http.Error(w, "later", 503)
				return
			}
			_, _ = w.Write([]byte(okReply))
		}},
		{name: "5xx beyond retries", retries: 1, calls: 2, wantErr: "HTTP 500", handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", 500)
		}},
		{name: "4xx is not retried", retries: 3, calls: 1, wantErr: "HTTP 403", handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", 403)
		}},
		{name: "redirect not followed", retries: 2, calls: 1, wantErr: "HTTP 302", handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/", http.StatusFound)
		}},
		{name: "hang", retries: 2, wantErr: "deadline", maxTime: 3 * time.Second, handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}},
		{name: "slow body", retries: 2, calls: 1, wantErr: "", maxTime: 3 * time.Second, handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`{"success":`))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}},
		{name: "huge body", retries: 2, calls: 1, wantErr: "larger than 64 KiB", handler: func(_ int32, w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"success":true,"x":"`))
			chunk := []byte(strings.Repeat("a", 32<<10))
			for i := 0; i < 1024 && r.Context().Err() == nil; i++ { // up to 32 MiB, unless the client hangs up
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noLeak(t)
			var calls atomic.Int32
			stop := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body) // read it all, so the server notices the client hanging up
				r.Body = io.NopCloser(bytes.NewReader(b))
				ctx, cancel := context.WithCancel(r.Context())
				defer cancel()
				go func() {
					select {
					case <-stop:
						cancel()
					case <-ctx.Done():
					}
				}()
				tt.handler(calls.Add(1), w, r.WithContext(ctx))
			}))
			defer srv.Close()
			defer close(stop)
			c := newClient(t, Config{URL: srv.URL + "/base", Timeout: time.Second, Retries: tt.retries, Backoff: 10 * time.Millisecond})
			start := time.Now()
			body, err := c.Post(context.Background(), "/password", AuthRequest{Username: "alice"})
			took := time.Since(start)
			if tt.maxTime != 0 && took > tt.maxTime {
				t.Errorf("took %s, want at most %s", took, tt.maxTime)
			}
			switch {
			case tt.name == "slow body":
				if err == nil {
					t.Fatalf("slow body: got %q, want an error", body)
				}
			case tt.wantErr == "" && err != nil:
				t.Fatalf("err %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
			if tt.wantErr == "" && err == nil {
				if r, err := ParseAuthReply(body); err != nil || !r.Success || r.AuthenticatedUsername != "alice" {
					t.Errorf("reply %+v, %v", r, err)
				}
			}
			if tt.calls != 0 && calls.Load() != tt.calls {
				t.Errorf("server saw %d calls, want %d", calls.Load(), tt.calls)
			}
			c.Close()
		})
	}
}

func TestClientUnreachable(t *testing.T) {
	noLeak(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	c := newClient(t, Config{URL: url, Timeout: 2 * time.Second, Retries: 2, Backoff: 10 * time.Millisecond})
	start := time.Now()
	if _, err := c.Post(context.Background(), "/pubkey", AuthRequest{}); err == nil || !strings.Contains(err.Error(), "attempt 3") {
		t.Fatalf("err %v, want a connection error after 3 attempts", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s", took)
	}
}

func TestClientConcurrencyBound(t *testing.T) {
	noLeak(t)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := newClient(t, Config{URL: srv.URL, Timeout: 300 * time.Millisecond, MaxConcurrent: 1})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Post(context.Background(), "/a", struct{}{})
		errc <- err
	}()
	// The first call holds the only slot until its timeout; a second call
	// waits for the slot, and gives up at its own timeout.
	_, err := c.Post(context.Background(), "/b", struct{}{})
	close(release)
	first := <-errc
	if err == nil && first == nil {
		t.Fatal("both calls passed with one slot and a hanging server")
	}
	c.Close()
}

func TestClientTLS(t *testing.T) {
	noLeak(t)
	dir := t.TempDir()
	clientCert, clientKey, clientPool := writeClientCert(t, dir)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "sshgate-test-client" {
			http.Error(w, "who are you", 401)
			return
		}
		_, _ = w.Write([]byte(`{"success":true}`))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientPool}
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"ca and client cert", Config{CAFile: ca, CertFile: clientCert, KeyFile: clientKey}, false},
		{"no client cert", Config{CAFile: ca}, true},
		{"system roots do not know the server", Config{CertFile: clientCert, KeyFile: clientKey}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.URL, tt.cfg.Timeout = srv.URL, 2*time.Second
			c := newClient(t, tt.cfg)
			body, err := c.Post(context.Background(), "/password", AuthRequest{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, body %q, want error %v", err, body, tt.wantErr)
			}
			c.Close()
		})
	}
	if _, err := New(Config{URL: srv.URL, CAFile: filepath.Join(dir, "missing.pem")}); err == nil {
		t.Error("missing ca_file accepted")
	}
	if _, err := New(Config{URL: "https://user:pw@example.com/"}); err == nil {
		t.Error("credentials in URL accepted")
	}
}

// writeClientCert writes a self-signed client certificate and key and
// returns their paths and a pool that trusts the certificate.
func writeClientCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sshgate-test-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := errors.Join(
		os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600),
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600),
	); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}
