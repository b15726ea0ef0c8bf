// Package upstream reaches targets that already run an SSH server (OpenSSH
// sshd or sshgate-agent --listen) over TCP. The gate logs in with its own key;
// the target's host key must match the one pinned when it was added.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/target"
)

// Backend dials upstream targets.
type Backend struct {
	gateKey ssh.Signer
	timeout time.Duration
}

var _ target.Backend = (*Backend)(nil)

// New returns a backend that logs in with gateKey.
func New(gateKey ssh.Signer, timeout time.Duration) (*Backend, error) {
	if gateKey == nil {
		return nil, errors.New("upstream backend: no gate key")
	}
	return &Backend{gateKey: gateKey, timeout: timeout}, nil
}

// Open dials the target and returns how to log in to it.
func (b *Backend) Open(ctx context.Context, req target.Request) (*target.Upstream, error) {
	t := req.Target
	if t.Upstream == nil || t.Upstream.Addr == "" {
		return nil, gate.Errorf(fmt.Errorf("target %s has no upstream address", t.Name), "target %q is misconfigured", t.Name)
	}
	if t.Upstream.HostKey == "" {
		return nil, gate.Errorf(fmt.Errorf("target %s has no pinned host key", t.Name), "target %q is misconfigured", t.Name)
	}
	pinned, _, err := sshkeys.ParseAuthorizedKey(t.Upstream.HostKey)
	if err != nil {
		return nil, gate.Errorf(fmt.Errorf("target %s: pinned host key: %w", t.Name, err), "target %q is misconfigured", t.Name)
	}
	d := net.Dialer{Timeout: b.timeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", t.Upstream.Addr)
	if err != nil {
		return nil, gate.Errorf(fmt.Errorf("dial %s: %w", t.Upstream.Addr, err), "target %q is unreachable", t.Name)
	}
	cfg := &ssh.ClientConfig{
		Config:            ssh.Config{Ciphers: sshkeys.ClientCiphers, KeyExchanges: sshkeys.KeyExchanges, MACs: sshkeys.MACs},
		User:              req.Login,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(b.gateKey)},
		HostKeyCallback:   sshkeys.PinnedHostKey(pinned),
		HostKeyAlgorithms: sshkeys.HostKeyAlgorithms(pinned),
		Timeout:           b.timeout,
		ClientVersion:     "SSH-2.0-sshgate",
	}
	return &target.Upstream{Conn: conn, Client: cfg}, nil
}
