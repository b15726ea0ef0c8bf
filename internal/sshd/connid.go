package sshd

import (
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
)

// connMeta is the ssh.ConnMetadata the authentication callbacks see: x/crypto's
// own, plus the connection id minted at accept (gate.ConnIDOf reads it), so
// that auth's log lines, webhook requests and the typed session all carry the
// one id of the connection.
type connMeta struct {
	ssh.ConnMetadata
	id     string
	extend func(time.Time) time.Time // nil: the deadline stays
}

func (m connMeta) ConnID() string { return m.id }

// ExtendLogin implements gate.LoginExtender.
func (m connMeta) ExtendLogin(until time.Time) time.Time {
	if m.extend == nil {
		return time.Time{}
	}
	return m.extend(until)
}

// forConn returns the server configuration of one connection: a shallow copy
// of the one built by the composition root (x/crypto copies it per connection
// too) whose callbacks see a connMeta. Callbacks handed back inside a
// PartialSuccessError are wrapped the same way.
func forConn(base *ssh.ServerConfig, id string, extend func(time.Time) time.Time) *ssh.ServerConfig {
	c := *base
	wrap := func(m ssh.ConnMetadata) ssh.ConnMetadata { return connMeta{m, id, extend} }
	c.PublicKeyCallback = wrapPublicKey(base.PublicKeyCallback, wrap)
	if f := base.VerifiedPublicKeyCallback; f != nil {
		c.VerifiedPublicKeyCallback = func(m ssh.ConnMetadata, k ssh.PublicKey, p *ssh.Permissions, alg string) (*ssh.Permissions, error) {
			perms, err := f(wrap(m), k, p, alg)
			return perms, partial(err, wrap)
		}
	}
	if f := base.PasswordCallback; f != nil {
		c.PasswordCallback = func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			perms, err := f(wrap(m), pw)
			return perms, partial(err, wrap)
		}
	}
	c.KeyboardInteractiveCallback = wrapKI(base.KeyboardInteractiveCallback, wrap)
	if f := base.AuthLogCallback; f != nil {
		c.AuthLogCallback = func(m ssh.ConnMetadata, method string, err error) { f(wrap(m), method, err) }
	}
	if f := base.BannerCallback; f != nil {
		c.BannerCallback = func(m ssh.ConnMetadata) string { return f(wrap(m)) }
	}
	return &c
}

func wrapPublicKey(f func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error), wrap func(ssh.ConnMetadata) ssh.ConnMetadata) func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
	if f == nil {
		return nil
	}
	return func(m ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		perms, err := f(wrap(m), k)
		return perms, partial(err, wrap)
	}
}

func wrapKI(f func(ssh.ConnMetadata, ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error), wrap func(ssh.ConnMetadata) ssh.ConnMetadata) func(ssh.ConnMetadata, ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
	if f == nil {
		return nil
	}
	return func(m ssh.ConnMetadata, ch ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
		perms, err := f(wrap(m), ch)
		return perms, partial(err, wrap)
	}
}

// partial wraps the next callbacks of a partial success.
func partial(err error, wrap func(ssh.ConnMetadata) ssh.ConnMetadata) error {
	ps, ok := err.(*ssh.PartialSuccessError)
	if !ok {
		return err
	}
	next := ps.Next
	if f := next.PasswordCallback; f != nil {
		next.PasswordCallback = func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			perms, err := f(wrap(m), pw)
			return perms, partial(err, wrap)
		}
	}
	next.PublicKeyCallback = wrapPublicKey(next.PublicKeyCallback, wrap)
	next.KeyboardInteractiveCallback = wrapKI(next.KeyboardInteractiveCallback, wrap)
	return &ssh.PartialSuccessError{Next: next}
}

// sessionOf is the typed session auth put on an authenticated connection.
func sessionOf(sc *ssh.ServerConn) *gate.Session {
	if sc.Permissions == nil {
		return nil
	}
	return gate.SessionOf(sc.Permissions.ExtraData)
}
