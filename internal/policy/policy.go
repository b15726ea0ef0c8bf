// Package policy decides what a gate user may reach: Decide is the one
// access decision of a connection (or of a menu choice), over a Snapshot of
// the store and what authentication proved. It is pure: no I/O, no ssh.
//
// Must not import: store/... target/... relay sshd/... auth/... broker account webhook app live obs audit/...
package policy

import (
	"sort"

	"github.com/sshgate/sshgate/internal/gate"
)

// Login is one way a user may log in to a target.
type Login struct {
	Name       string
	Forwarding bool
	Reach      Reach // where its local forwards may go (when Forwarding)
}

// Access is a target a user may reach, with the logins granted on it. The
// first login is the one used when the user names none.
type Access struct {
	Target gate.Target
	Logins []Login
}

// Permit is a decision to let a user into a target as a login.
type Permit struct {
	Target     gate.Target
	Login      string
	Forwarding bool
	Reach      Reach         // where local forwards may go, when Forwarding
	Controls   gate.Controls // what its sessions may do (GrantControls), the time limits resolved
}

// Accessible lists the targets the grants open, sorted by target name. A
// grant on an environment covers every target in it; a grant without a login
// means the target's default login. When several grants give the same login,
// forwarding is allowed if any of them allows it, to the destinations any of
// them allows (a forwarding grant without --forward-to: any).
func Accessible(targets []gate.Target, grants []gate.Grant) []Access {
	var out []Access
	for _, t := range targets {
		logins := map[string]*Login{}
		for _, g := range grants {
			if g.Target != t.Name && (g.Env == "" || g.Env != t.Env) {
				continue
			}
			login := g.Login
			if login == "" {
				login = t.Login // may be empty: a container target's own user
			}
			l := logins[login]
			if l == nil {
				l = &Login{Name: login}
				logins[login] = l
			}
			if g.Forwarding {
				l.Forwarding = true
				l.Reach.add(g.ForwardTo)
			}
		}
		if len(logins) == 0 {
			continue
		}
		a := Access{Target: t}
		for _, l := range logins {
			a.Logins = append(a.Logins, *l)
		}
		sort.Slice(a.Logins, func(i, j int) bool {
			li, lj := a.Logins[i].Name, a.Logins[j].Name
			if (li == t.Login) != (lj == t.Login) {
				return li == t.Login // the target's default login first
			}
			return li < lj
		})
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target.Name < out[j].Target.Name })
	return out
}

// DefaultLogin is how `ls` and the menu show a target's unnamed default
// login (a container's own user, when it is only a uid), and what a user may
// type for it: USER+TARGET+default.
const DefaultLogin = "default"

// Permitted returns the permit for target as login ("" for the default), or
// false. Unknown and ungranted targets are indistinguishable to the caller.
func Permitted(access []Access, target, login string) (Permit, bool) {
	for _, a := range access {
		if a.Target.Name != target {
			continue
		}
		for _, l := range a.Logins {
			if login == "" || l.Name == login || (l.Name == "" && login == DefaultLogin) {
				return Permit{Target: a.Target, Login: l.Name, Forwarding: l.Forwarding, Reach: l.Reach}, true
			}
		}
		return Permit{}, false
	}
	return Permit{}, false
}
