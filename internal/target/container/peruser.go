package container

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sshgate/sshgate/internal/target"
)

// Per-user containers: one container per (spec key, gate user), whose main
// process is a long-lived agent (the "keeper": --listen on the container's
// own loopback, reaping zombies as PID 1). Each connection starts one more
// agent with an exec (--dial on a socket the gate listens on for that
// connection alone, or --stdio over the exec stream). The container is
// removed after its idle TTL with no connection.
type warmEntry struct {
	ready    chan struct{} // closed when bx or err is set
	bx       *box
	err      error
	conns    int
	lastUsed time.Time
	ttl      time.Duration
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
			e = &warmEntry{ready: make(chan struct{}), ttl: ttl}
			b.warm[key] = e
		}
		e.conns++ // the reaper leaves entries with connections alone
		b.mu.Unlock()

		if creator {
			labels := map[string]string{LabelUser: user, LabelConn: connID, LabelPer: "user"}
			bx, err := b.create(ctx, s, true, labels)
			if err == nil {
				if _, err = b.start(ctx, bx); err != nil {
					b.cleanup(bx)
				}
			}
			b.mu.Lock()
			if err != nil {
				e.err = err
				if b.warm[key] == e {
					delete(b.warm, key)
				}
			} else {
				e.bx = bx
				log.Info("per-user container started", "container", bx.name, "id", short(bx.id), "took", time.Since(bx.started).Round(time.Millisecond))
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
			st, err := b.eng.Inspect(ctx, e.bx.ref(), time.Time{})
			if err != nil || !st.Running {
				// Died or removed behind our back: start afresh, once.
				b.mu.Lock()
				if b.warm[key] == e {
					delete(b.warm, key)
				}
				b.mu.Unlock()
				b.releaseWarm(e)
				b.cleanup(e.bx)
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
			b.releaseWarm(e)
			return nil, err
		}
		return b.upstream(e.bx, conn, login, log, func(context.Context) error {
			b.releaseWarm(e)
			return nil
		}), nil
	}
}

func (b *Backend) releaseWarm(e *warmEntry) {
	b.mu.Lock()
	e.conns--
	e.lastUsed = b.cfg.Now()
	b.mu.Unlock()
}
