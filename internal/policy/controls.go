package policy

import (
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

// Sessions are the gate-wide defaults of the time limits (the config's
// sessions section): a grant that sets none gets these. Zero: no limit.
type Sessions struct {
	MaxSession  time.Duration
	IdleTimeout time.Duration
}

// GrantControls combines the controls of every grant that opens target t
// as login (a grant without a login opens the target's default login).
// Separate grants are separate permissions, so the most permissive wins:
//
//   - a forced command applies only when every matching grant forces one:
//     a grant without --command lets the user choose; among grants that all
//     force one, the first (lowest id) grant's command is used;
//   - each --no-* flag, --upload-only and --download-only hold only if every
//     grant that counts sets it (an upload-only and a download-only grant
//     together allow both directions);
//   - --agent-forwarding and --watch hold if any grant that counts sets it;
//   - each time limit is the longest of the grants' (a grant's unset limit
//     is the gate's default; a zero default means no limit, which wins).
//
// No matching grant: the zero Controls with the defaults.
func GrantControls(grants []gate.Grant, t gate.Target, login string, def Sessions) gate.Controls {
	var free, forced []gate.Grant
	for _, g := range grants {
		if g.Target != t.Name && (g.Env == "" || g.Env != t.Env) {
			continue
		}
		if l := g.Login; l != login && (l != "" || t.Login != login) {
			continue
		}
		if g.Controls.Command != "" {
			forced = append(forced, g)
		} else {
			free = append(free, g)
		}
	}
	set := free
	if len(set) == 0 {
		set = forced
	}
	if len(set) == 0 {
		return gate.Controls{MaxSession: def.MaxSession, IdleTimeout: def.IdleTimeout}
	}
	out := gate.Controls{NoShell: true, NoExec: true, NoSFTP: true, NoSCP: true, NoRsync: true, UploadOnly: true, DownloadOnly: true, Command: set[0].Controls.Command}
	for i, g := range set {
		c := g.Controls
		out.NoShell = out.NoShell && c.NoShell
		out.NoExec = out.NoExec && c.NoExec
		out.NoSFTP = out.NoSFTP && c.NoSFTP
		out.NoSCP = out.NoSCP && c.NoSCP
		out.NoRsync = out.NoRsync && c.NoRsync
		out.UploadOnly = out.UploadOnly && c.UploadOnly
		out.DownloadOnly = out.DownloadOnly && c.DownloadOnly
		out.AgentForwarding = out.AgentForwarding || c.AgentForwarding
		out.Watch = out.Watch || c.Watch
		ms, it := orDefault(c.MaxSession, def.MaxSession), orDefault(c.IdleTimeout, def.IdleTimeout)
		if i == 0 {
			out.MaxSession, out.IdleTimeout = ms, it
			continue
		}
		out.MaxSession, out.IdleTimeout = longest(out.MaxSession, ms), longest(out.IdleTimeout, it)
	}
	return out
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// longest of two limits, zero (none) being the longest.
func longest(a, b time.Duration) time.Duration {
	if a == 0 || b == 0 {
		return 0
	}
	return max(a, b)
}

// MayWatch reports whether grants let their user watch other users' live
// PTY sessions on target t: one grant that opens t (by name, or by its
// environment), for any login, sets --watch.
func MayWatch(grants []gate.Grant, t gate.Target) bool {
	for _, g := range grants {
		if (g.Target == t.Name || g.Env != "" && g.Env == t.Env) && g.Controls.Watch {
			return true
		}
	}
	return false
}
