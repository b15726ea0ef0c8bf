package container

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target"
)

// Per-user containers: one container per (spec key, gate user), whose main
// process is a long-lived agent (the "keeper": --listen on the container's
// own loopback, reaping zombies as PID 1). Each connection starts one more
// agent with an exec (--dial on a socket the gate listens on for that
// connection alone, or --stdio over the exec stream). The container is
// removed after its idle TTL with no connection. With a Registry the
// container may be another gate's (foreign): this gate then only connects
// to it, and forgets it when its last connection here ends.
type warmEntry struct {
	ready    chan struct{} // closed when bx or err is set
	bx       *box
	err      error
	conns    int
	lastUsed time.Time
	ttl      time.Duration
	foreign  bool // another live gate owns the container
	dirty    bool // used since the registry was last told
	spec     *Spec
	user     string
}

var errNotRunning = errors.New("not running")

func (b *Backend) openWarm(ctx context.Context, s *Spec, user, login, connID string, log *slog.Logger) (*target.Upstream, error) {
	key := s.Key + "\x00" + user
	ttl := s.IdleTTL
	if ttl <= 0 {
		ttl = b.cfg.DefaultIdleTTL
	}
	for attempt := 0; ; attempt++ {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, Failed(s.Target, errors.New("backend closed"), "the gate is shutting down")
		}
		e := b.warm[key]
		creator := e == nil
		if creator {
			e = &warmEntry{ready: make(chan struct{}), ttl: ttl, spec: s, user: user}
			b.warm[key] = e
		}
		e.conns++ // the reaper leaves entries with connections alone
		e.dirty = true
		b.mu.Unlock()

		if creator {
			bx, foreign, err := b.startWarm(ctx, s, user, connID, ttl, log)
			b.mu.Lock()
			if err != nil {
				e.err = err
				if b.warm[key] == e {
					delete(b.warm, key)
				}
			} else {
				e.bx, e.foreign, e.lastUsed = bx, foreign, b.cfg.Now()
			}
			close(e.ready)
			b.mu.Unlock()
			if err != nil {
				return nil, err
			}
		} else {
			select {
			case <-e.ready:
			case <-ctx.Done():
				b.releaseWarm(e)
				return nil, engineFailed(s.Target, "wait for container", ctx.Err())
			}
			if e.err != nil {
				b.releaseWarm(e)
				return nil, e.err
			}
			if c := e.bx.warm.trySpare(); c != nil {
				log.Debug("reusing per-user container", "container", e.bx.name, "spare", true)
				return b.upstream(e.bx, c, login, log, func(context.Context) error {
					b.releaseWarm(e)
					return nil
				}), nil
			}
			st, err := b.eng.Inspect(ctx, e.bx.ref(), time.Time{})
			if err != nil || !st.Running {
				// Died or removed behind our back: start afresh, once.
				b.dropWarm(key, e)
				if attempt == 0 {
					log.Warn("per-user container is gone; starting a new one", "container", e.bx.name)
					continue
				}
				return nil, engineFailed(s.Target, "inspect container", errors.Join(err, errNotRunning))
			}
			log.Debug("reusing per-user container", "container", e.bx.name)
		}
		conn, err := b.connect(ctx, e.bx)
		if err != nil {
			if e.foreign && attempt == 0 {
				// Its gate may have removed it just now: look again, once.
				log.Warn("connect to another gate's per-user container; looking again", "container", e.bx.name, "err", err)
				b.dropWarm(key, e)
				continue
			}
			b.releaseWarm(e)
			return nil, err
		}
		return b.upstream(e.bx, conn, login, log, func(context.Context) error {
			b.releaseWarm(e)
			return nil
		}), nil
	}
}

// startWarm finds (in the registry) or starts the per-user container of
// s and user. foreign: another live gate owns it.
func (b *Backend) startWarm(ctx context.Context, s *Spec, user, connID string, ttl time.Duration, log *slog.Logger) (_ *box, foreign bool, _ error) {
	waited, losses := false, 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, false, engineFailed(s.Target, "start container", err)
		}
		placeholder := ""
		if b.shares() {
			bx, owned, err := b.claim(ctx, s, user)
			if errors.Is(err, errPending) {
				if !waited {
					log.Info("another gate is starting this user's container; waiting for it")
					waited = true
				}
				t := time.NewTimer(pendingPoll)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, false, engineFailed(s.Target, "wait for another gate's container", ctx.Err())
				case <-t.C:
				}
				continue
			}
			if err != nil {
				log.Warn("per-user container from the registry", "err", err)
			} else if bx != nil {
				if st, err := b.eng.Inspect(ctx, bx.ref(), time.Time{}); err == nil && st.Running {
					if owned {
						b.adopt(bx)
					}
					return bx, !owned, nil
				}
				// Not running: its row is stale, whoever owns it.
				log.Warn("per-user container in the registry is not running; starting a new one", "container", bx.name, "owner_is_this_gate", owned)
				b.dropForeign(bx)
				_ = b.cfg.Registry.RemoveContainer(ctx, bx.id)
				if owned {
					b.cleanup(bx)
				}
				continue
			}
			if err == nil {
				var lost bool
				if placeholder, lost = b.placeholder(ctx, s, user, ttl); lost {
					continue // another gate has just recorded one: claim that
				}
			}
		}
		labels := map[string]string{LabelUser: user, LabelConn: connID, LabelPer: "user"}
		b.liveStarts.Add(1)
		bx, err := b.create(ctx, s, true, labels, "")
		if err == nil {
			if _, err = b.start(ctx, bx); err != nil {
				b.cleanup(bx)
			}
		}
		b.liveStarts.Add(-1)
		if err != nil {
			if placeholder != "" {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), registryTimeout)
				_ = b.cfg.Registry.RemoveContainer(rctx, placeholder)
				cancel()
			}
			return nil, false, err
		}
		kind := gate.ContainerPerUser
		if !b.shares() {
			kind = gate.ContainerConn // reachable by this gate alone: reaped when it dies
		}
		if !b.record(ctx, bx, s, kind, user, ttl, placeholder) {
			b.cleanup(bx)
			if losses++; losses < 3 {
				log.Info("another gate started this user's container first; using that one", "container", bx.name)
				continue
			}
			return nil, false, Failed(s.Target, errors.New("lost the registry race three times"), "the gate could not prepare it")
		}
		log.Info("per-user container started", "container", bx.name, "id", short(bx.id), "took", time.Since(bx.started).Round(time.Millisecond))
		return bx, false, nil
	}
}

// adopt tracks a container from the registry that this gate now owns.
func (b *Backend) adopt(bx *box) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.boxes[bx.id] = bx
	bx.recorded = true
	if b.cfg.ContainersDir != "" && filepath.Dir(bx.dir.path) == b.cfg.ContainersDir {
		b.dirs[bx.dirID] = true // this gate's own directory (an earlier life)
	}
}

// dropWarm forgets e (if still the entry of key) and its container: this
// gate's own is removed, another gate's is left to it.
func (b *Backend) dropWarm(key string, e *warmEntry) {
	b.mu.Lock()
	if b.warm[key] == e {
		delete(b.warm, key)
	}
	foreign := e.foreign
	b.mu.Unlock()
	b.releaseWarm(e)
	if foreign {
		b.dropForeign(e.bx)
	} else {
		b.cleanup(e.bx)
	}
}

func (b *Backend) releaseWarm(e *warmEntry) {
	b.mu.Lock()
	e.conns--
	e.lastUsed = b.cfg.Now()
	e.dirty = true
	b.mu.Unlock()
}
