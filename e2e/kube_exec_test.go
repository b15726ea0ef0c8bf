package e2e_test

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// TestKubeExecProtocol: the agent's exec stream is SPDY by default (the API
// server passes it through to the kubelet without translating it, the
// cheaper path), WebSocket with kubernetes.exec_protocol: websocket; both
// carry a connection byte-exact, per connection and over a per-user pod's
// long-lived --mux stream. The gate's debug log names the protocol of each
// stream it opened.
func TestKubeExecProtocol(t *testing.T) {
	payload := make([]byte, 4<<20+3)
	rand.Read(payload)
	sum := sha256.Sum256(payload)
	want := hex.EncodeToString(sum[:])
	for _, c := range []struct{ name, extra, want, not string }{
		{"default", "", "protocol=spdy", "protocol=websocket"},
		{"websocket", "  exec_protocol: websocket\n", "protocol=websocket", "protocol=spdy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newKubeWorld(t, c.extra+"log:\n  level: debug\n")
			box := w.target(t, "proto", "--image", harness.TestImage)
			mine := w.target(t, "protou", "--image", harness.TestImage, "--per", "user", "--idle-ttl", "5m")
			for _, target := range []string{box, mine, mine} {
				r := harness.Run(w.alice.SSHTo(target, nil, "sha256sum"), payload, short)
				if r.Code != 0 || !strings.HasPrefix(r.Stdout, want+" ") {
					t.Errorf("%s: exit %d stdout %q stderr %q, want sum %s", target, r.Code, r.Stdout, r.Stderr, want)
				}
			}
			if !w.gate.LogContains("pod exec stream up") || !w.gate.LogContains(c.want) || w.gate.LogContains(c.not) {
				t.Errorf("the gate's log does not show every exec stream on %s (and none on %s)", c.want, c.not)
			}
			if err := w.gate.Stop(); err != nil {
				t.Errorf("stop gate: %v", err)
			}
			w.waitNoPods(t, box)
			w.waitNoPods(t, mine)
		})
	}
}

// TestKubeExecFallback: between the gate and the API server, a proxy that
// refuses SPDY upgrades (as some WebSocket-only ones do) and passes the
// rest: the gate's SPDY exec streams fail their upgrade and fall back to
// WebSocket, and a connection works byte-exact.
func TestKubeExecFallback(t *testing.T) {
	k := requireKube(t)
	pki := filepath.Join(k.state, "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "gate.crt"), filepath.Join(pki, "gate.key"))
	if err != nil {
		t.Skipf("the cluster's gate credentials: %v", err)
	}
	ca, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	api, _ := url.Parse("https://127.0.0.1:26443")
	if b, err := os.ReadFile(filepath.Join(k.state, "gate.kubeconfig")); err == nil {
		if m := regexp.MustCompile(`server: "?(https://[^"\s}]+)`).FindSubmatch(b); m != nil {
			api, _ = url.Parse(string(m[1]))
		}
	}
	var refused atomic.Int32
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(api) },
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}},
	}
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(strings.ToLower(r.Header.Get("Upgrade")), "spdy") {
			refused.Add(1)
			http.Error(w, "SPDY is not passed here", http.StatusBadRequest)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	proxy.StartTLS()
	defer proxy.Close()
	kc := filepath.Join(t.TempDir(), "proxy.kubeconfig")
	if err := os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {client-certificate: %q, client-key: %q}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, proxy.URL, filepath.Join(pki, "gate.crt"), filepath.Join(pki, "gate.key"))), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newKubeWorldAt(t, kc, nil, "log:\n  level: debug\n")
	box := w.target(t, "fallback", "--image", harness.TestImage)
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	sum := sha256.Sum256(payload)
	r := harness.Run(w.alice.SSHTo(box, nil, "sha256sum"), payload, short)
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, hex.EncodeToString(sum[:])+" ") {
		t.Errorf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if refused.Load() == 0 {
		t.Errorf("the gate never tried SPDY through the proxy")
	}
	if !w.gate.LogContains("protocol=websocket") || w.gate.LogContains("protocol=spdy") {
		t.Errorf("the gate's log does not show the stream falling back to WebSocket")
	}
	if err := w.gate.Stop(); err != nil {
		t.Errorf("stop gate: %v", err)
	}
	w.waitNoPods(t, box)
}
