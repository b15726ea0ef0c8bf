package harness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// HAProxyBackend is one gate behind the balancer: its SSH address and the
// address of its /readyz (health checks).
type HAProxyBackend struct {
	Addr   string // 127.0.0.1:SSHPORT
	Health string // 127.0.0.1:METRICSPORT
	Source string // the address HAProxy connects from ("": the kernel's choice)
}

// HAProxy is a running haproxy in TCP mode in front of gates, sending
// PROXY protocol v2 headers (send-proxy-v2) and checking each gate's
// /readyz every CheckInterval.
type HAProxy struct {
	Addr          string // 127.0.0.1:PORT, where clients connect
	Port          int
	CheckInterval time.Duration
	Config        string // the generated haproxy.cfg
	Stderr        *Buffer
	proc          *Process
}

// HAProxyConfig is the configuration StartHAProxy runs (and the README's
// example follows).
func HAProxyConfig(port int, backends []HAProxyBackend, inter time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend ssh
    bind 127.0.0.1:%d
    default_backend gates
backend gates
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter %dms fall 1 rise 1 on-marked-down shutdown-sessions
`, port, inter.Milliseconds())
	for i, be := range backends {
		_, hp, _ := net.SplitHostPort(be.Health)
		src := ""
		if be.Source != "" {
			src = " source " + be.Source
		}
		fmt.Fprintf(&b, "    server gate%d %s send-proxy-v2 check port %s%s\n", i, be.Addr, hp, src)
	}
	return b.String()
}

// StartHAProxy runs `haproxy -db` with a generated configuration on a free
// 127.0.0.1 port; it is killed in t.Cleanup. It waits until every backend
// is seen up by its health check.
func StartHAProxy(t testing.TB, backends []HAProxyBackend, inter time.Duration) *HAProxy {
	t.Helper()
	RequireTools(t, "haproxy")
	h := &HAProxy{Port: FreePort(t), CheckInterval: inter, Stderr: &Buffer{}}
	h.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port))
	h.Config = HAProxyConfig(h.Port, backends, inter)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(h.Config), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := StartProcess("haproxy", h.Stderr, nil, "haproxy", "-db", "-f", cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.proc = p
	t.Cleanup(func() {
		p.Stop(0)
		if t.Failed() {
			t.Logf("haproxy output:\n%s", clip(h.Stderr.String()))
		}
	})
	if err := WaitListening(h.Addr, 30*time.Second, p.Alive); err != nil {
		t.Fatalf("haproxy: %v\n%s", err, h.Stderr.String())
	}
	return h
}
