package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// --- two gates behind HAProxy -------------------------------------------

// lbSource is the address HAProxy connects to the gates from: the only one
// they take PROXY headers from, so that the same gate also serves the
// single-gate rows' clients (from 127.0.0.1) directly.
const lbSource = "127.0.0.2"

// lbProxyConfig is what each gate behind the balancer adds to its config:
// PROXY protocol from lbSource and /readyz for HAProxy's checks.
func lbProxyConfig(metrics string) string {
	return "ssh:\n  proxy_protocol:\n    trusted: [" + lbSource + "/32]\nmetrics:\n  listen: " + metrics + "\n"
}

// pair is the PostgreSQL gate, a second gate on the same store with the
// same keys (copied, as an operator copies them from a secret store), and
// HAProxy in front of both (send-proxy-v2, /readyz checks).
type pair struct {
	a, b *gate
	lb   *server
	port int
	kh   string // known_hosts for the balancer's port
}

// startPair starts gate b beside a (which must serve already, its config
// made with lbProxyConfig(aMetrics)) and the balancer.
func startPair(ctx context.Context, a *gate, aMetrics, pgConfig, tmp string) (*pair, error) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		return nil, fmt.Errorf("no haproxy: %w", err)
	}
	dir := filepath.Join(tmp, "gate-postgres-b")
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	for _, f := range []string{"host_keys", "gate_key", "gate_key.pub", "ca"} {
		src := filepath.Join(a.data, f)
		if _, err := os.Stat(src); os.IsNotExist(err) {
			continue
		}
		if out, err := exec.Command("cp", "-a", src, filepath.Join(data, f)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("cp %s: %v: %s", src, err, out)
		}
	}
	bp, err := harness.PickPort()
	if err != nil {
		return nil, err
	}
	bMetrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(bp))
	cfg := filepath.Join(dir, "sshgate.yaml")
	if err := os.WriteFile(cfg, []byte(pgConfig+lbProxyConfig(bMetrics)), 0o600); err != nil {
		return nil, err
	}
	b := &gate{name: "postgres-b", bin: a.bin, data: data, host: "127.0.0.1", config: cfg, gateKey: a.gateKey}
	if err := b.serve(ctx, dir, cfg); err != nil {
		return nil, fmt.Errorf("gate postgres-b: %w", err)
	}
	lp, err := harness.PickPort()
	if err != nil {
		return nil, err
	}
	hcfg := filepath.Join(tmp, "haproxy.cfg")
	backends := []harness.HAProxyBackend{{Addr: a.addr, Health: aMetrics, Source: lbSource}, {Addr: b.addr, Health: bMetrics, Source: lbSource}}
	if err := os.WriteFile(hcfg, []byte(harness.HAProxyConfig(lp, backends, time.Second)), 0o600); err != nil {
		return nil, err
	}
	lb, err := startServer("haproxy", filepath.Join(tmp, "haproxy.log"), nil, "haproxy", "-db", "-f", hcfg)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(lp))
	if err := lb.waitBanner(addr, 30*time.Second); err != nil {
		return nil, err
	}
	kh := filepath.Join(tmp, "known_hosts_lb")
	if _, err := harness.WriteKnownHosts(kh, "127.0.0.1", lp, a.hostKeyPub()); err != nil {
		return nil, err
	}
	return &pair{a: a, b: b, lb: lb, port: lp, kh: kh}, nil
}

// endpoint logs in through the balancer; the CPU counted is both gates'.
func (p *pair) endpoint(key string) *endpoint {
	e := gateEndpoint(p.a, key)
	e.label = "2 gates"
	e.also = p.b
	e.client.Port, e.client.KnownHosts = p.port, p.kh
	return e
}
