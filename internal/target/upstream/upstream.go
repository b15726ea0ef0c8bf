// Package upstream reaches targets that already run an SSH server (OpenSSH
// sshd or sshgate-agent --listen) over TCP. The gate logs in with its own key;
// the target's host key must match the one pinned when it was added. With
// the gate's CA (cert.go) it logs in with a certificate signed for that one
// connection, and verifies unpinned targets' host certificates.
//
// Must not import: sshd/... relay broker store/... auth/... policy app target/container target/docker
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/quickack"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/target"
)

// Backend dials upstream targets.
type Backend struct {
	gateKey ssh.Signer
	timeout time.Duration

	trust     *ca.Trust // the gate's CAs (cert.go); nil: gate key and pinned host keys only
	inwardTTL time.Duration
	log       *slog.Logger
	refused   *refusals // targets that refused the login certificate lately (cert.go)
}

// Options configure a Backend. GateKey is required.
type Options struct {
	GateKey ssh.Signer
	Timeout time.Duration // dial and handshake
	// CA, when the gate has its own CA, makes the backend log in with
	// short-lived certificates from the user CA (valid for InwardTTL) and
	// verify unpinned targets through the host CA.
	CA        *ca.Trust
	InwardTTL time.Duration
	Log       *slog.Logger
}

var _ target.Backend = (*Backend)(nil)

// New returns a backend that logs in with o.GateKey (and o.CA's certificates).
func New(o Options) (*Backend, error) {
	if o.GateKey == nil {
		return nil, errors.New("upstream backend: no gate key")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Backend{gateKey: o.GateKey, timeout: o.Timeout, trust: o.CA, inwardTTL: o.InwardTTL, log: o.Log, refused: newRefusals()}, nil
}

// Open dials the target and returns how to log in to it.
func (b *Backend) Open(ctx context.Context, req target.Request) (*target.Upstream, error) {
	t := req.Target
	if t.Upstream == nil || t.Upstream.Addr == "" {
		return nil, gate.Errorf(fmt.Errorf("target %s has no upstream address", t.Name), "target %q is misconfigured", t.Name)
	}
	hostKeyCallback, hostKeyAlgos, err := b.hostCheck(t)
	if err != nil {
		return nil, err
	}
	auth, err := b.authMethods(req)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: b.timeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", t.Upstream.Addr)
	if err != nil {
		return nil, gate.Errorf(fmt.Errorf("dial %s: %w", t.Upstream.Addr, err), "target %q is unreachable", t.Name)
	}
	cfg := &ssh.ClientConfig{
		Config:            ssh.Config{Ciphers: sshkeys.ClientCiphers, KeyExchanges: sshkeys.KeyExchanges, MACs: sshkeys.MACs},
		User:              req.Login,
		Auth:              auth,
		HostKeyCallback:   hostKeyCallback,
		HostKeyAlgorithms: hostKeyAlgos,
		Timeout:           b.timeout,
		ClientVersion:     "SSH-2.0-sshgate",
	}
	// sshd writes its version and KEXINIT apart (Nagle on): quick ACKs
	// keep it from waiting on the gate's delayed ACK.
	return &target.Upstream{Conn: quickack.Wrap(conn), Client: cfg}, nil
}
