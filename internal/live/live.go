// Package live keeps the store's table of live sessions in step with the
// sessions one gate relays, for `sshgate sessions` (which runs in another
// process, maybe against a store several gates share): it registers each
// session before it starts, writes its byte counts now and then, polls for
// kill requests and removes the rows of ended sessions, all of them in one
// statement per poll. It imports store and relay only.
//
// Must not import: store/... broker sshd/... target/... auth/... policy app
package live

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/relay"
)

// Store is the part of the store the registry uses.
type Store interface {
	AddLiveSession(ctx context.Context, s gate.LiveSession) error
	UpdateLiveSessions(ctx context.Context, counts []gate.LiveCount) error // one statement for the batch
	RemoveLiveSessions(ctx context.Context, ids []string) error            // one statement for the batch
	KillRequests(ctx context.Context, gateID string) ([]string, error)
	ClearLiveSessions(ctx context.Context, gateID string) error
}

// Options tune the registry.
type Options struct {
	Poll        time.Duration // kill request poll (default 1s)
	UpdateEvery int           // byte counts are written every this many polls (default 5), all in one statement
}

// Registry is one gate's live sessions.
type Registry struct {
	st     Store
	gateID string
	log    *slog.Logger
	opts   Options

	mu       sync.Mutex
	sessions map[string]*entry
	ended    []string // rows to remove at the next poll (end)
}

type entry struct {
	c       *relay.Counters
	kill    func()
	in, out int64 // last written
	killing bool
}

// New returns the registry of gate gateID and clears the rows a previous
// run of the same gate left behind (it crashed, or was killed).
func New(ctx context.Context, st Store, gateID string, log *slog.Logger, o Options) (*Registry, error) {
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.UpdateEvery <= 0 {
		o.UpdateEvery = 5
	}
	if err := st.ClearLiveSessions(ctx, gateID); err != nil {
		return nil, err
	}
	return &Registry{st: st, gateID: gateID, log: log, opts: o, sessions: map[string]*entry{}}, nil
}

// GateID is the id the registry's rows carry.
func (r *Registry) GateID() string { return r.gateID }

// Count is the number of sessions registered now.
func (r *Registry) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// Start registers a session. A store that fails is logged: the session
// runs on, unlisted.
func (r *Registry) Start(s gate.LiveSession, c *relay.Counters, kill func()) func() {
	s.GateID = r.gateID
	r.mu.Lock()
	r.sessions[s.ID] = &entry{c: c, kill: kill}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.st.AddLiveSession(ctx, s); err != nil {
		r.log.Warn("register live session", "session_id", s.ID, "err", err)
	}
	return func() { r.end(s.ID) }
}

// end unlists the session at once in this gate (its count, kill requests)
// and queues its row for removal: the next poll removes every row queued
// since the last in one statement, so a session costs the store one write
// (its row, before it starts) instead of two. Until then `sshgate
// sessions` may list it for up to one poll interval after it ended; a kill
// requested for it meanwhile finds nothing to kill.
func (r *Registry) end(id string) {
	r.mu.Lock()
	delete(r.sessions, id)
	if len(r.ended) < maxEnded {
		r.ended = append(r.ended, id)
	}
	r.mu.Unlock()
}

// maxEnded bounds the rows queued for removal while the store fails; past
// it, rows are left for the gate's next start to clear (ClearLiveSessions).
const maxEnded = 100000

// removeEnded removes the rows of the sessions ended since the last call,
// in one statement; on failure they stay queued for the next.
func (r *Registry) removeEnded(ctx context.Context) {
	r.mu.Lock()
	ids := r.ended
	r.ended = nil
	r.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.st.RemoveLiveSessions(qctx, ids); err != nil {
		r.log.Warn("unregister ended live sessions", "sessions", len(ids), "err", err)
		r.mu.Lock()
		if len(r.ended)+len(ids) <= maxEnded {
			r.ended = append(ids, r.ended...)
		}
		r.mu.Unlock()
	}
}

// Run polls for kill requests, removes ended sessions' rows and writes byte
// counts until ctx ends; then it removes the rows still queued.
func (r *Registry) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.Poll)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			r.removeEnded(context.Background())
			return
		case <-t.C:
		}
		r.poll(ctx, n%r.opts.UpdateEvery == 0)
	}
}

// poll runs one round: ended sessions' rows, kill requests, then (with
// update) byte counts.
func (r *Registry) poll(ctx context.Context, update bool) {
	r.removeEnded(ctx) // first: an ended session is asked about no more
	r.mu.Lock()
	empty := len(r.sessions) == 0
	r.mu.Unlock()
	if empty {
		return // nothing of ours can be killed
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ids, err := r.st.KillRequests(qctx, r.gateID)
	if err != nil {
		r.log.Warn("poll kill requests", "err", err)
	}
	for _, id := range ids {
		r.mu.Lock()
		e := r.sessions[id]
		start := e != nil && !e.killing
		if start {
			e.killing = true
		}
		r.mu.Unlock()
		if start {
			r.log.Info("kill requested", "session_id", id)
			go e.kill()
		}
	}
	if !update {
		return
	}
	// Every changed count in one write, whatever the number of sessions.
	var ups []gate.LiveCount
	r.mu.Lock()
	for id, e := range r.sessions {
		in, out := e.c.In.Load(), e.c.Out.Load()
		if in != e.in || out != e.out {
			e.in, e.out = in, out
			ups = append(ups, gate.LiveCount{ID: id, BytesIn: in, BytesOut: out})
		}
	}
	r.mu.Unlock()
	if err := r.st.UpdateLiveSessions(qctx, ups); err != nil {
		r.log.Warn("update live sessions", "sessions", len(ups), "err", err)
	}
}
