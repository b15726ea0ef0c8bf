package gate

import (
	"strconv"
	"time"
)

// Route is a parsed SSH username (package route parses it, once per
// connection): USER, USER+TARGET, USER+TARGET+LOGIN, USER+gate, or the
// platform form NODEID-UID.
type Route struct {
	User   string
	Target string // "" when none was given (or "gate" was given)
	Login  string // "" when none was given
	Raw    string // the target part as typed, for messages; sanitized
	Gate   bool   // USER+gate: the gate's own commands even with a default target

	// Platform form NODEID-UID: User is "" until auth resolves UID to a
	// user name; Node is the target's numeric id.
	Node int64
	UID  int64
}

// Platform reports whether the route is the NODEID-UID form.
func (r Route) Platform() bool { return r.UID != 0 }

// String puts a route back into username form.
func (r Route) String() string {
	if r.Platform() {
		return strconv.FormatInt(r.Node, 10) + "-" + strconv.FormatInt(r.UID, 10)
	}
	s := r.User
	if r.Target != "" {
		s += "+" + r.Target
		if r.Login != "" {
			s += "+" + r.Login
		}
	}
	return s
}

// Session is what authentication proved about one connection, typed. The
// authentication callback that proves possession (a verified signature, a
// password, a code) builds it as its last step and puts it in
// ssh.Permissions.ExtraData under SessionKey; from then on it is read, never
// written. The broker takes everything it knows of the login from here.
type Session struct {
	ConnID   string   // minted by the accept loop; the one id of the connection
	Identity Identity // the proven gate user
	Username string   // the SSH username as typed (bounded, for the config webhook)
	Route    Route    // Username, parsed once; Route.User is the proven user
	// BadTarget: the part after the user was malformed. It is answered
	// after authentication exactly as an unknown target.
	BadTarget bool

	Cert    *CertLogin    // nil unless the login was a user certificate
	TOTP    TOTPProof     // how the login met the second factor
	Webhook *WebhookLogin // nil unless the auth webhook authenticated it
	SSO     *SSOLogin     // nil unless the login was a single sign-on (sso.go)
	// JumpVia is set on the inner connection of ssh -J: the id of the
	// outer connection that carries it (and proved the user).
	JumpVia string
}

// CertLogin is what a user certificate allows beyond the grants: a session
// may never get more than its certificate says.
type CertLogin struct {
	PTY          bool   // permit-pty
	Forwarding   bool   // permit-port-forwarding
	Agent        bool   // permit-agent-forwarding
	ForceCommand string // force-command critical option ("" with !HasForce)
	HasForce     bool
}

// TOTPProof records how a login met the TOTP second factor. Recorded is
// false when nothing was recorded (the factor is off), which every target
// check refuses whenever the factor is on.
type TOTPProof struct {
	Recorded bool
	Proof    string // code, grace, none or exempt (policy.TOTPProof*)
	Mode     string // the mode decided at login ("" when the factor is off)
	Target   string // the target it was decided for ("" for none)
}

// WebhookLogin is what the auth webhook attached to a login it accepted.
type WebhookLogin struct {
	Env  map[string]string // environment for every target session
	Meta map[string]string // non-sensitive metadata, passed to the config webhook
}

// SessionKey is the ssh.Permissions.ExtraData key of the *Session.
type SessionKey struct{}

// SessionOf returns the session of an authenticated connection's
// ExtraData, or nil.
func SessionOf(extra map[any]any) *Session {
	s, _ := extra[SessionKey{}].(*Session)
	return s
}

// ConnIDer is implemented by the ssh.ConnMetadata the accept loop hands to
// the authentication callbacks: it carries the connection's id.
type ConnIDer interface{ ConnID() string }

// ConnIDOf returns the connection id carried by m, or "".
func ConnIDOf(m any) string {
	if c, ok := m.(ConnIDer); ok {
		return c.ConnID()
	}
	return ""
}

// LoginExtender is implemented by the ssh.ConnMetadata the accept loop
// hands to the authentication callbacks: a step that waits on a person
// (a device sign-in in a browser) moves the connection's login deadline
// to until, at most as far as the accept loop allows. It reports the
// deadline in force.
type LoginExtender interface {
	ExtendLogin(until time.Time) time.Time
}

// ExtendLogin moves m's login deadline when m allows it; the zero time
// when it does not.
func ExtendLogin(m any, until time.Time) time.Time {
	if e, ok := m.(LoginExtender); ok {
		return e.ExtendLogin(until)
	}
	return time.Time{}
}
