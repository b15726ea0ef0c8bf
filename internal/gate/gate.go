// Package gate holds the vocabulary shared by every other package: the
// domain records (users, keys, environments, targets and their specs,
// grants, TOTP enrolments, bans, live sessions), a parsed username (Route),
// what authentication proved about a connection (Session, Identity), and the
// errors whose text is safe to show to a user (PublicError). It is a leaf.
//
// Must not import: any project package
package gate

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// Identity is a user proven by an authentication callback. It is carried in
// ssh.Permissions.Extensions and read back only from ServerConn.Permissions.
type Identity struct {
	User        string // gate user name
	Method      string // "publickey", "password" or "cert" (a user certificate); "+totp" after a second factor
	Fingerprint string // SHA256 fingerprint of the key that signed, for publickey
}

// Extension keys under which the identity travels in ssh.Permissions.
const (
	ExtUser        = "sshgate-user"
	ExtMethod      = "sshgate-method"
	ExtFingerprint = "sshgate-key-fp"
)

// IdentityFromExtensions reads the identity put there by the auth callbacks.
func IdentityFromExtensions(ext map[string]string) (*Identity, error) {
	if ext == nil || ext[ExtUser] == "" {
		return nil, errors.New("no authenticated identity on connection")
	}
	return &Identity{User: ext[ExtUser], Method: ext[ExtMethod], Fingerprint: ext[ExtFingerprint]}, nil
}

// Extensions encodes the identity for ssh.Permissions.
func (id *Identity) Extensions() map[string]string {
	m := map[string]string{ExtUser: id.User, ExtMethod: id.Method}
	if id.Fingerprint != "" {
		m[ExtFingerprint] = id.Fingerprint
	}
	return m
}

// PublicError is an error whose Public text may be shown to the user. The
// cause stays in the log under the same Ref.
type PublicError struct {
	Public string // one line, chosen, never derived from Cause
	Ref    string // short random reference shown to the user and logged
	Cause  error
}

func (e *PublicError) Error() string {
	if e.Cause == nil {
		return e.Public
	}
	return fmt.Sprintf("%s (ref %s): %v", e.Public, e.Ref, e.Cause)
}

func (e *PublicError) Unwrap() error { return e.Cause }

// UserMessage is the line shown to the user.
func (e *PublicError) UserMessage() string {
	if e.Ref == "" {
		return e.Public
	}
	return fmt.Sprintf("%s (ref %s)", e.Public, e.Ref)
}

// Errorf makes a PublicError with a fresh reference.
func Errorf(cause error, format string, args ...any) *PublicError {
	return &PublicError{Public: fmt.Sprintf(format, args...), Ref: NewRef(), Cause: cause}
}

// ErrUnavailable marks a login that failed because a service the gate
// needs (its store) did not answer: the user is told to try again, not
// that they were denied, once per connection.
var ErrUnavailable = errors.New("service temporarily unavailable")

// UnavailableMessage is the line a user sees for ErrUnavailable.
func UnavailableMessage(ref string) string {
	return "sshgate: service temporarily unavailable, try again (ref " + ref + ")"
}

// NewRef returns a short random reference such as "4f9k2x".
func NewRef() string {
	const alphabet = "23456789abcdefghjkmnpqrstuvwxyz"
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// NewID returns a 128-bit random identifier in hex, for connections and sessions.
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
