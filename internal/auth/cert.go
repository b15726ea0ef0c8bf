package auth

import (
	"context"
	"maps"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
)

// MethodCert is Identity.Method for a user who logged in with an OpenSSH
// user certificate.
const MethodCert = "cert"

// Extension keys carrying certificate details for logs.
const (
	ExtCertSerial = "sshgate-cert-serial"
	ExtCertKeyID  = "sshgate-cert-key-id"
	ExtCertCA     = "sshgate-cert-ca"
	// Set ("no") when the certificate lacks permit-pty,
	// permit-port-forwarding or permit-agent-forwarding: the gate then
	// refuses PTYs, forwarding or agent forwarding, as sshd does for such
	// certificates.
	ExtCertPTY        = "sshgate-cert-pty"
	ExtCertForwarding = "sshgate-cert-forwarding"
	ExtCertAgent      = "sshgate-cert-agent"
)

// certPublicKey answers whether a certificate may be tried for user: the
// checks of ca.Trust.CheckUserCert (CA, principal = the gate user, validity,
// revocation, critical options, source-address). What it returns is only a
// candidate: identity is granted in certVerified, for this very certificate,
// once the client has signed with its key.
func (a *Authenticator) certPublicKey(conn ssh.ConnMetadata, user string, cert *ssh.Certificate) (*ssh.Permissions, error) {
	if a.certs == nil {
		return nil, ErrDenied
	}
	if err := a.certs.CheckUserCert(cert, user, conn.RemoteAddr()); err != nil {
		a.log.Info("user certificate refused", "user", user, "serial", cert.Serial, "key_id", logSafe(cert.KeyId, 128), "reason", logSafe(err.Error(), 300))
		return nil, ErrDenied
	}
	id := &gate.Identity{User: user, Method: MethodCert, Fingerprint: sshkeys.Fingerprint(cert)}
	ext := id.Extensions()
	ext[ExtCertSerial] = strconv.FormatUint(cert.Serial, 10)
	ext[ExtCertKeyID] = logSafe(cert.KeyId, 128)
	ext[ExtCertCA] = sshkeys.Fingerprint(cert.SignatureKey)
	if _, ok := cert.Extensions[ca.ExtPermitPTY]; !ok {
		ext[ExtCertPTY] = "no"
	}
	if _, ok := cert.Extensions[ca.ExtPermitPortForwarding]; !ok {
		ext[ExtCertForwarding] = "no"
	}
	if _, ok := cert.Extensions[ca.ExtPermitAgentForwarding]; !ok {
		ext[ExtCertAgent] = "no"
	}
	// source-address and force-command travel as critical options: x/crypto
	// enforces source-address again, the broker applies force-command.
	return &ssh.Permissions{Extensions: ext, CriticalOptions: maps.Clone(cert.CriticalOptions)}, nil
}

// certVerified runs in VerifiedPublicKey for a certificate: the same
// certificate is checked again (a revocation may have landed in between) and
// the login logged with its serial and key id.
func (a *Authenticator) certVerified(conn ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions) error {
	cert, ok := key.(*ssh.Certificate)
	if !ok || a.certs == nil {
		return ErrDenied
	}
	user := perms.Extensions[gate.ExtUser]
	if err := a.certs.CheckUserCert(cert, user, conn.RemoteAddr()); err != nil {
		a.log.Info("user certificate refused", "user", user, "serial", cert.Serial, "key_id", logSafe(cert.KeyId, 128), "reason", logSafe(err.Error(), 300))
		return ErrDenied
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	if _, err := a.users.GetUser(ctx, user); err != nil {
		return ErrDenied
	}
	a.log.Info("user certificate accepted", "user", user, "serial", cert.Serial, "key_id", logSafe(cert.KeyId, 128),
		"ca", sshkeys.Fingerprint(cert.SignatureKey), "key", sshkeys.Fingerprint(cert.Key))
	return nil
}

func forceCommand(p *ssh.Permissions) (string, bool) {
	if !certLogin(p) {
		return "", false
	}
	cmd, ok := p.CriticalOptions[ca.OptForceCommand]
	return cmd, ok
}

// certLogin reports whether the permissions come from a certificate login,
// with or without a second factor after it ("cert", "cert+totp").
func certLogin(p *ssh.Permissions) bool {
	if p == nil {
		return false
	}
	m := p.Extensions[gate.ExtMethod]
	return m == MethodCert || strings.HasPrefix(m, MethodCert+"+")
}

// certAllows reports whether the certificate of a login (if any) permits a
// PTY and port forwarding. Logins not made with a certificate are allowed
// both (grants decide).
func certAllows(p *ssh.Permissions) (pty, forwarding bool) {
	if !certLogin(p) {
		return true, true
	}
	return p.Extensions[ExtCertPTY] != "no", p.Extensions[ExtCertForwarding] != "no"
}

// certAllowsAgent reports whether the certificate of a login (if any)
// permits agent forwarding.
func certAllowsAgent(p *ssh.Permissions) bool {
	return !certLogin(p) || p.Extensions[ExtCertAgent] != "no"
}

// logSafe makes a client-chosen string (a certificate's key id, a reason
// quoting its principals) printable and at most max bytes before it is logged.
func logSafe(s string, max int) string {
	out := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s) && len(out) < max; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	return string(out)
}
