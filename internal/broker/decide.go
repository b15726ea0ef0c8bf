package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/store"
)

// storeTimeout bounds each read of the policy.
const storeTimeout = 10 * time.Second

// Snapshot reads what one decision for user looks at: targets, target
// infos, the user's grants and default target. It is the one reader of
// "what may this user reach": the decision, `ls`, `config` and the menu all
// start from it.
func (b *Broker) Snapshot(ctx context.Context, user string) (policy.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	var snap policy.Snapshot
	var err error
	if snap.Targets, err = b.Store.ListTargets(ctx); err != nil {
		return snap, fmt.Errorf("list targets: %w", err)
	}
	if snap.Grants, err = b.Store.ListGrants(ctx, user); err != nil {
		return snap, fmt.Errorf("list grants: %w", err)
	}
	if snap.Infos, err = b.Store.ListTargetInfo(ctx); err != nil {
		return snap, fmt.Errorf("list target info: %w", err)
	}
	if snap.User, err = b.Store.GetUserInfo(ctx, user); err != nil && !errors.Is(err, store.ErrNotFound) {
		return snap, fmt.Errorf("get user info: %w", err)
	}
	snap.User.User = user
	snap.TOTP = b.TOTP != nil
	snap.Sessions = policy.Sessions{MaxSession: b.Config.Sessions.MaxSession.D(), IdleTimeout: b.Config.Sessions.IdleTimeout.D()}
	return snap, nil
}

// decide computes the access decision for route r (the connection's own, or
// a target chosen in the menu) from a fresh snapshot. For the connection's
// own route, the TOTP mode auth read moments ago for the same target is
// used rather than read again; a menu choice reads the mode now.
func (c *conn) decide(r gate.Route, badTarget, ownRoute bool) policy.Decision {
	snap, err := c.b.Snapshot(c.ctx, c.id.User)
	if err != nil {
		pe := gate.Errorf(err, policy.ErrPolicy)
		c.log.Error("read policy", "ref", pe.Ref, "err", err)
		return policy.Decision{Err: pe}
	}
	if snap.TOTP {
		name := policy.Candidate(snap, r, badTarget, c.hook)
		if p := c.sess.TOTP; ownRoute && name != "" && p.Recorded && p.Target == name && p.Mode != "" {
			snap.Modes = map[string]string{name: p.Mode}
		} else if name != "" {
			for _, t := range snap.Targets {
				if t.Name == name {
					ctx, cancel := context.WithTimeout(c.ctx, storeTimeout)
					snap.Modes = map[string]string{name: c.b.TOTP.TargetMode(ctx, t)}
					cancel()
				}
			}
		}
	}
	d := policy.Decide(snap, c.sess, r, badTarget, c.hook)
	switch {
	case d.Err != nil && d.Err.Cause != nil:
		c.log.Warn("target refused: "+d.Err.Public, "ref", d.Err.Ref, "err", d.Err.Cause)
	case d.Err == nil && !d.Gate:
		c.log.Debug("decided", "target", d.Permit.Target.Name, "login", d.Permit.Login, "forwarding", d.Permit.Forwarding)
	}
	return d
}
