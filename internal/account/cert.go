package account

import (
	"context"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/ssh"
)

// CertSigner signs a user certificate for key from the gate's client CA
// (the one only the gate trusts).
type CertSigner func(key ssh.PublicKey, principal, keyID string, ttl time.Duration, ext, opts map[string]string) (*ssh.Certificate, error)

// Certificate extensions and options `cert` sets.
const (
	extPermitPTY        = "permit-pty"
	extPermitForwarding = "permit-port-forwarding"
	extPermitAgent      = "permit-agent-forwarding"
	optSourceAddress    = "source-address"
)

// certCommand is `cert`: after a single sign-on that proved a key, a
// short-lived OpenSSH user certificate for that key, signed by the client
// CA, for tools that cannot do keyboard-interactive: principal the user,
// source-address the sign-on's source prefix, valid no longer than the
// reuse window, port and agent forwarding only where a grant allows them.
func (c *Conn) certCommand(_ context.Context, out, errOut io.Writer) int {
	say := func(msg string) int { fmt.Fprintln(errOut, "sshgate: "+msg); return 1 }
	if c.SignClient == nil || c.CertTTL <= 0 {
		return say("cert is not enabled on this gate")
	}
	if c.SSO == nil || c.SSO.PublicKey == "" {
		return say("cert needs a single sign-on made with a key (ssh -i KEY, then approve the sign-in)")
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.SSO.PublicKey))
	if err != nil {
		c.Log.Warn("cert: the session's key does not parse", "err", err)
		return say("the gate could not issue a certificate")
	}
	ttl := c.CertTTL
	if !c.SSO.Expires.IsZero() {
		if left := time.Until(c.SSO.Expires).Truncate(time.Second); left < ttl {
			ttl = left
		}
	}
	if ttl < time.Minute {
		return say("the single sign-on ends in less than a minute; sign in again first")
	}
	ext := map[string]string{extPermitPTY: ""}
	if snap, err := c.snapshot(); err == nil {
		for _, g := range snap.Grants {
			if g.Forwarding {
				ext[extPermitForwarding] = ""
			}
			if g.Controls.AgentForwarding {
				ext[extPermitAgent] = ""
			}
		}
	} else {
		c.Log.Warn("cert: read grants failed", "err", err)
		return say("the gate cannot read its policy")
	}
	opts := map[string]string{}
	if c.SSO.Source != "" {
		opts[optSourceAddress] = c.SSO.Source
	}
	keyID := fmt.Sprintf("sshgate sso user=%s sub=%s", c.Identity.User, printableID(c.SSO.Subject))
	cert, err := c.SignClient(key, c.Identity.User, keyID, ttl, ext, opts)
	if err != nil {
		c.Log.Warn("cert: sign failed", "err", err)
		return say("the gate could not issue a certificate")
	}
	c.Log.Info("sso certificate issued", "serial", cert.Serial, "key_id", keyID, "ttl", ttl, "source", c.SSO.Source)
	_, _ = out.Write(ssh.MarshalAuthorizedKey(cert))
	return 0
}

// printableID keeps a provider subject printable and short for a key id.
func printableID(s string) string {
	b := make([]byte, 0, min(len(s), 64))
	for i := 0; i < len(s) && len(b) < 64; i++ {
		ch := s[i]
		if ch <= 0x20 || ch > 0x7e {
			ch = '?'
		}
		b = append(b, ch)
	}
	return string(b)
}
