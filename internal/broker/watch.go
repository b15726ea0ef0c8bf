package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/sshgate/sshgate/internal/account"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/watch"
)

// LiveSessions is what the store says of the sessions and gates of every
// gate sharing it: a watcher of a session another gate holds is told which.
type LiveSessions interface {
	ListLiveSessions(ctx context.Context) ([]gate.LiveSession, error)
	ListGates(ctx context.Context) ([]gate.GateInfo, error)
}

// errNoWatch is the one answer for a session that does not exist, is not
// a PTY session, or that the user may not watch: it says nothing of which.
func errNoWatch(id string) *gate.PublicError {
	return &gate.PublicError{Public: fmt.Sprintf("session %s not found or you may not watch it", id)}
}

// watchSession starts a watch of live session id for `watch ID`: allowed
// when one of the user's grants for the session's target has --watch.
func (c *conn) watchSession(id string) (account.Watch, error) {
	hub := c.b.Observers.Watch
	if !watch.ValidID(id) {
		return nil, &gate.PublicError{Public: "a session id is 16 hex digits, as `sshgate sessions` lists them"}
	}
	if hub == nil {
		return nil, errNoWatch(id)
	}
	snap, err := c.b.Snapshot(c.ctx, c.id.User)
	if err != nil {
		pe := gate.Errorf(err, policy.ErrPolicy)
		c.log.Error("read policy", "ref", pe.Ref, "err", err)
		return nil, pe
	}
	may := func(target string) bool {
		for _, t := range snap.Targets {
			if t.Name == target {
				return policy.MayWatch(snap.Grants, t)
			}
		}
		return false
	}
	info, ok := hub.Lookup(id)
	if !ok {
		return nil, c.watchElsewhere(id, may)
	}
	if !may(info.Target) {
		c.log.Info("watch refused", "session_id", id, "target", info.Target)
		return nil, errNoWatch(id)
	}
	w, err := hub.Watch(id, watch.Who{Name: c.id.User, ConnID: c.sc.ID})
	if errors.Is(err, watch.ErrBusy) {
		return nil, &gate.PublicError{Public: fmt.Sprintf("session %s has as many watchers as it may have (%d); try again later", id, watch.MaxWatchers)}
	}
	if err != nil { // ended meanwhile
		return nil, errNoWatch(id)
	}
	c.log.Info("watching a session", "session_id", id, "target", info.Target, "watched_user", info.User)
	return watching{w}, nil
}

// watchElsewhere answers a watch of a session this gate does not hold: if
// another gate sharing the store holds it and the user may watch it, the
// line says which gate; otherwise the one refusal.
func (c *conn) watchElsewhere(id string, may func(target string) bool) error {
	ls := c.b.LiveSessions
	if ls == nil {
		return errNoWatch(id)
	}
	ctx, cancel := context.WithTimeout(c.ctx, storeTimeout)
	defer cancel()
	sessions, err := ls.ListLiveSessions(ctx)
	if err != nil {
		c.log.Warn("list live sessions", "err", err)
		return errNoWatch(id)
	}
	for _, s := range sessions {
		if s.ID != id || !may(s.Target) {
			continue
		}
		where := "gate " + s.GateID
		if gates, err := ls.ListGates(ctx); err == nil {
			for _, g := range gates {
				if g.ID == s.GateID && g.Address != "" {
					where += " (" + g.Address + ")"
				}
			}
		}
		return &gate.PublicError{Public: fmt.Sprintf("session %s is on %s, which this gate cannot reach; connect to that gate to watch it", id, where)}
	}
	return errNoWatch(id)
}

// watching is a watch as the account side sees it.
type watching struct{ w *watch.Watcher }

func (w watching) Header() string { return watch.Header(w.w.Info()) }
func (w watching) Stop()          { w.w.Stop() }

func (w watching) Next(done <-chan struct{}) ([]byte, *account.WatchEnd) {
	data, reason := w.w.Next(done)
	switch reason {
	case "":
		return data, nil
	case watch.ReasonLeft:
		return data, &account.WatchEnd{}
	case watch.ReasonTooSlow:
		return data, &account.WatchEnd{Line: watch.EndLine(reason), Status: 1}
	}
	return data, &account.WatchEnd{Line: watch.EndLine(reason)}
}
