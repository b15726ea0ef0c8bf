package upstream

import (
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/target"
)

func (b *Backend) ownCA() *ca.CA {
	if b.trust == nil {
		return nil
	}
	return b.trust.Own()
}

// authMethods is how the gate logs in to t: with a certificate (default when
// the gate has a user CA), offered before the gate key as OpenSSH offers a
// CertificateFile before its key, so targets that do not trust the CA yet
// keep working with the gate key in authorized_keys; or with the gate key
// only (Auth "key").
func (b *Backend) authMethods(req target.Request) ([]ssh.AuthMethod, error) {
	t := req.Target
	own := b.ownCA()
	mode := t.Upstream.Auth
	if mode == "" && own != nil && own.User != nil {
		mode = gate.AuthCert
	}
	if mode != gate.AuthCert {
		return []ssh.AuthMethod{ssh.PublicKeys(b.gateKey)}, nil
	}
	if own == nil || own.User == nil {
		return nil, gate.Errorf(fmt.Errorf("target %s wants certificate login but the gate has no user CA", t.Name), "target %q is misconfigured", t.Name)
	}
	user := "-"
	if req.ID != nil {
		user = req.ID.User
	}
	keyID := fmt.Sprintf("sshgate user=%s target=%s conn=%s", user, t.Name, req.ConnID)
	in, err := own.SignInward(req.Login, keyID, b.inwardTTL, req.Forwarding, req.AgentForwarding)
	if err != nil {
		return nil, gate.Errorf(fmt.Errorf("target %s: %w", t.Name, err), "target %q is unreachable", t.Name)
	}
	if b.log != nil {
		b.log.Info("login certificate issued", "conn_id", req.ConnID, "target", t.Name, "login", req.Login,
			"serial", in.Cert.Serial, "key_id", keyID, "valid_before", time.Unix(int64(in.Cert.ValidBefore), 0).UTC().Format(time.RFC3339),
			"port_forwarding", req.Forwarding, "agent_forwarding", req.AgentForwarding)
	}
	return []ssh.AuthMethod{ssh.PublicKeys(in.Signer, b.gateKey)}, nil
}

// hostCheck is how t's host key is verified: the pinned key, or with none
// pinned, a host certificate from the gate's host CA naming the target's
// host principal.
func (b *Backend) hostCheck(t gate.Target) (ssh.HostKeyCallback, []string, error) {
	if t.Upstream.HostKey != "" {
		pinned, _, err := sshkeys.ParseAuthorizedKey(t.Upstream.HostKey)
		if err != nil {
			return nil, nil, gate.Errorf(fmt.Errorf("target %s: pinned host key: %w", t.Name, err), "target %q is misconfigured", t.Name)
		}
		return sshkeys.PinnedHostKey(pinned), sshkeys.HostKeyAlgorithms(pinned), nil
	}
	if own := b.ownCA(); own == nil || own.Host == nil {
		return nil, nil, gate.Errorf(fmt.Errorf("target %s has no pinned host key and the gate has no host CA", t.Name), "target %q is misconfigured", t.Name)
	}
	cb, err := b.trust.HostKeyCallback(ca.HostPrincipal(t.Upstream.HostPrincipal, t.Upstream.Addr))
	if err != nil {
		return nil, nil, gate.Errorf(fmt.Errorf("target %s: %w", t.Name, err), "target %q is misconfigured", t.Name)
	}
	return cb, ca.HostCertAlgorithms, nil
}
