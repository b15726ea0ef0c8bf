package broker

import (
	"context"
	"errors"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/store"
)

// MenuStore is the part of the store the account menu, the username grammar
// and the gate's account commands read and write (issue 4).
type MenuStore interface {
	ListTargetInfo(ctx context.Context) ([]gate.TargetInfo, error)
	GetUserInfo(ctx context.Context, user string) (gate.UserInfo, error)
	EnvGroups(ctx context.Context) (map[string]string, error)
	GetUser(ctx context.Context, name string) (gate.User, error)
	ListKeys(ctx context.Context, user string) ([]gate.Key, error)
	AddKey(ctx context.Context, k gate.Key) error
	RemoveKey(ctx context.Context, user, fingerprint string) error
}

// resolution is where the connection's username leads: a target (by its
// canonical name) or the gate itself.
type resolution struct {
	target string // canonical target name; "" with gate
	gate   bool   // no target: the gate's commands, or the menu on a PTY
	err    error  // a PublicError; unknown targets are answered by permit
}

// resolve turns the parsed username into a target once per connection:
// NODEID-UID by the target's id, USER+NAME by name then by alias, USER
// alone by the user's default target (USER+gate never). Unknown ids and
// names resolve to nothing, which policy then refuses exactly like an
// ungranted target.
func (c *conn) resolve() resolution {
	c.resOnce.Do(func() { c.res = c.doResolve() })
	return c.res
}

func (c *conn) doResolve() resolution {
	r := c.route
	if c.rerr != nil {
		return resolution{err: errNoTarget(r.Raw)}
	}
	if r.Gate {
		return resolution{gate: true}
	}
	ms, ok := c.b.store.(MenuStore)
	if !ok { // a store without the menu tables: names only
		return resolution{target: r.Target, gate: r.Target == ""}
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if r.Target == "" && !r.Platform() {
		ui, err := ms.GetUserInfo(ctx, c.id.User)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return resolution{err: gate.Errorf(err, "the gate cannot read its policy")}
		}
		if ui.DefaultTarget == "" {
			return resolution{gate: true}
		}
		return resolution{target: ui.DefaultTarget}
	}
	infos, err := ms.ListTargetInfo(ctx)
	if err != nil {
		return resolution{err: gate.Errorf(err, "the gate cannot read its policy")}
	}
	return resolution{target: policy.ResolveName(infos, r.Target, r.Node)}
}
