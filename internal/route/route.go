// Package route parses the SSH username into a gate user, an optional target
// and an optional login: USER, USER+TARGET, USER+TARGET+LOGIN, USER+gate, or
// the platform form NODEID-UID (a target's numeric id and the user's numeric
// uid). It is the one canonical parser of that untrusted string (fuzzed). It
// does no I/O: the store resolves uids, ids and aliases.
//
// Must not import: store/... policy auth/... broker account target/... relay sshd
package route

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/sshgate/sshgate/internal/gate"
)

// GateTarget is the reserved target name that reaches the gate's own
// commands even when a user has a default target.
const GateTarget = "gate"

// Separator splits the parts of a username.
const Separator = "+"

// MaxLen bounds the whole username; longer names are refused unread.
const MaxLen = 200

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	loginRE = regexp.MustCompile(`^[a-z_][a-z0-9._-]{0,31}$`)
	// platformRE is the NODEID-UID form: never a name, so that no user,
	// env or target name can be read two ways.
	platformRE = regexp.MustCompile(`^[0-9]+-[0-9]+$`)
	// canonicalRE is the only spelling of a NODEID-UID that routes:
	// positive, no leading zeros, at most 18 digits (fits an int64).
	canonicalRE = regexp.MustCompile(`^[1-9][0-9]{0,17}-[1-9][0-9]{0,17}$`)
)

// ErrInvalidUser means the user part is not a valid gate user name: the
// connection must fail authentication exactly as for an unknown user.
var ErrInvalidUser = errors.New("invalid user name")

// ErrInvalidTarget means the part after the user is malformed: after
// authentication it is answered as an unknown target.
var ErrInvalidTarget = errors.New("invalid target")

// ValidName reports whether s is a valid user, environment, target or alias
// name. A digits-dash-digits string is never a name (it is NODEID-UID).
func ValidName(s string) bool { return nameRE.MatchString(s) && !platformRE.MatchString(s) }

// ValidLogin reports whether s is a valid login on a target.
func ValidLogin(s string) bool { return loginRE.MatchString(s) }

// Parse splits an SSH username. On ErrInvalidTarget the returned Route has
// User set and Raw holding a printable form of what followed it.
func Parse(username string) (gate.Route, error) {
	if len(username) > MaxLen {
		return gate.Route{}, ErrInvalidUser
	}
	if platformRE.MatchString(username) {
		return parsePlatform(username)
	}
	parts := strings.Split(username, Separator)
	if !ValidName(parts[0]) {
		return gate.Route{}, ErrInvalidUser
	}
	r := gate.Route{User: parts[0]}
	if len(parts) == 1 {
		return r, nil
	}
	r.Raw = Printable(strings.Join(parts[1:], Separator))
	if len(parts) > 3 || !ValidName(parts[1]) {
		return r, ErrInvalidTarget
	}
	if len(parts) == 3 && (!ValidLogin(parts[2]) || parts[1] == GateTarget) {
		return r, ErrInvalidTarget
	}
	if parts[1] == GateTarget {
		r.Gate = true
		return r, nil
	}
	r.Target = parts[1]
	if len(parts) == 3 {
		r.Login = parts[2]
	}
	return r, nil
}

// parsePlatform reads NODEID-UID. A non-canonical spelling (leading zeros,
// zero, too long) is ErrInvalidUser, so it fails authentication exactly as
// an unknown user does.
func parsePlatform(s string) (gate.Route, error) {
	if !canonicalRE.MatchString(s) {
		return gate.Route{}, ErrInvalidUser
	}
	node, uid, _ := strings.Cut(s, "-")
	r := gate.Route{Raw: s}
	var err1, err2 error
	r.Node, err1 = strconv.ParseInt(node, 10, 64)
	r.UID, err2 = strconv.ParseInt(uid, 10, 64)
	if err1 != nil || err2 != nil {
		return gate.Route{}, ErrInvalidUser
	}
	return r, nil
}

// Printable returns s with anything outside printable ASCII replaced by '?'
// and cut to 64 bytes, so it can be echoed to a terminal or a log.
func Printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}
