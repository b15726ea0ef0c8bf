package auth

import (
	"encoding/hex"
	"errors"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/route"
)

// Between its callbacks (PublicKey -> VerifiedPublicKey -> the second
// factor) auth keeps its working state in ssh.Permissions.Extensions, which
// x/crypto carries from one step to the next. The step that completes a
// login turns that state into the typed gate.Session (done), once; nothing
// after authentication reads the strings.

// done completes a callback's answer: a success gets the connection's typed
// session; a partial success gets its next callbacks wrapped the same way,
// so whichever step ends the login builds the session.
func (a *Authenticator) done(meta ssh.ConnMetadata, perms *ssh.Permissions, err error) (*ssh.Permissions, error) {
	var ps *ssh.PartialSuccessError
	if errors.As(err, &ps) {
		next := ps.Next
		if f := next.KeyboardInteractiveCallback; f != nil {
			next.KeyboardInteractiveCallback = func(m ssh.ConnMetadata, c ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
				p, err := f(m, c)
				return a.done(m, p, err)
			}
		}
		if f := next.PasswordCallback; f != nil {
			next.PasswordCallback = func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
				p, err := f(m, pw)
				return a.done(m, p, err)
			}
		}
		return nil, &ssh.PartialSuccessError{Next: next}
	}
	if err != nil {
		return perms, err
	}
	s, err := a.session(meta, perms)
	if err != nil {
		a.log.Warn("login succeeded without a usable identity: denied", "err", err)
		return nil, ErrDenied
	}
	return &ssh.Permissions{
		Extensions:      perms.Extensions,
		CriticalOptions: perms.CriticalOptions,
		ExtraData:       map[any]any{gate.SessionKey{}: s},
	}, nil
}

// session reads the working state of a completed login into a Session.
func (a *Authenticator) session(meta ssh.ConnMetadata, perms *ssh.Permissions) (*gate.Session, error) {
	if perms == nil {
		return nil, errors.New("no permissions")
	}
	id, err := gate.IdentityFromExtensions(perms.Extensions)
	if err != nil {
		return nil, err
	}
	username := meta.User()
	r, perr := route.Parse(username)
	if perr != nil && !errors.Is(perr, route.ErrInvalidTarget) {
		return nil, perr
	}
	r.User = id.User // NODEID-UID: the uid's owner, as the credential proved
	if len(username) > route.MaxLen {
		username = username[:route.MaxLen]
	}
	s := &gate.Session{
		ConnID:    connectionID(meta),
		Identity:  *id,
		Username:  username,
		Route:     r,
		BadTarget: perr != nil,
	}
	if certLogin(perms) {
		pty, fwd := certAllows(perms)
		cmd, force := forceCommand(perms)
		s.Cert = &gate.CertLogin{PTY: pty, Forwarding: fwd, Agent: certAllowsAgent(perms), ForceCommand: cmd, HasForce: force}
	}
	if proof, mode, target, ok := totpProof(perms); ok {
		s.TOTP = gate.TOTPProof{Recorded: true, Proof: proof, Mode: mode, Target: target}
	}
	s.SSO = ssoLogin(perms)
	if perms.Extensions[ExtWebhook] == "1" {
		env, md := webhookAttrs(perms)
		s.Webhook = &gate.WebhookLogin{Env: env, Meta: md}
	}
	return s, nil
}

// connectionID is the connection's one id, minted by the accept loop and
// carried by the metadata it hands the callbacks. Outside the accept loop
// (callbacks driven directly) it falls back to the SSH session id.
func connectionID(meta ssh.ConnMetadata) string {
	if id := gate.ConnIDOf(meta); id != "" {
		return id
	}
	return hex.EncodeToString(meta.SessionID())
}
