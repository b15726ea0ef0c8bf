package docker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target"
)

// Per-user containers: one container per (target spec, gate user), whose
// main process is a long-lived agent (the "keeper": --listen on the
// container's own loopback, reaping zombies as PID 1). Each connection
// starts one more agent with `docker exec ... --dial unix:/run/sshgate/c-X.sock`
// on a socket the gate listens on for that connection alone: one exec call,
// no data through the engine. The container is removed after IdleTTL with no
// connection.
type warmEntry struct {
	ready    chan struct{} // closed when bx or err is set
	bx       *box
	err      error
	conns    int
	lastUsed time.Time
	ttl      time.Duration
}

func (b *Backend) openWarm(ctx context.Context, bs *built, user, login, connID string, log *slog.Logger) (*target.Upstream, error) {
	key := bs.key + "\x00" + user
	for attempt := 0; ; attempt++ {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, publicf(bs.target, errors.New("backend closed"), "the gate is shutting down")
		}
		e := b.warm[key]
		creator := e == nil
		if creator {
			e = &warmEntry{ready: make(chan struct{}), ttl: bs.idleTTL}
			b.warm[key] = e
		}
		e.conns++ // the reaper leaves entries with connections alone
		b.mu.Unlock()

		if creator {
			labels := map[string]string{LabelUser: user, LabelConn: connID, LabelPer: "user"}
			bx, err := b.create(ctx, bs, true, labels)
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
				return nil, engineError(bs.target, "wait for container", ctx.Err())
			}
			if e.err != nil {
				b.releaseWarm(e)
				return nil, e.err
			}
			st, err := b.api.ContainerInspect(ctx, e.bx.id)
			if err != nil || st.State == nil || !st.State.Running {
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
				return nil, engineError(bs.target, "inspect container", errors.Join(err, errors.New("not running")))
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
	e.lastUsed = time.Now()
	b.mu.Unlock()
}

// Warm pools: Pool containers per target spec, started with the keeper as
// main process and labelled sshgate.pool=1. Open takes one (checking it is
// still running), connects a fresh agent to it like a per-user container,
// and refills the pool in the background. The taken container belongs to
// that connection and is removed on Release.
type pool struct {
	bs       *built
	ready    []*box
	filling  int
	lastUsed time.Time
	failures int
	lastFail time.Time
}

// Prewarm fills the pool of t now (when t has Pool > 0), rather than on the
// first Open.
func (b *Backend) Prewarm(ctx context.Context, t gate.Target) error {
	bs, err := b.build(t)
	if err != nil {
		return err
	}
	if bs.perUser || bs.spec.Pool <= 0 {
		return nil
	}
	b.mu.Lock()
	if b.pools[bs.key] == nil {
		b.pools[bs.key] = &pool{bs: bs, lastUsed: time.Now()}
	}
	b.mu.Unlock()
	b.refill(bs)
	return nil
}

// PoolReady is how many pre-started containers the pool of t holds now.
func (b *Backend) PoolReady(t gate.Target) int {
	bs, err := b.build(t)
	if err != nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.pools[bs.key]; p != nil {
		return len(p.ready)
	}
	return 0
}

func (b *Backend) takePool(ctx context.Context, bs *built) *box {
	for {
		b.mu.Lock()
		p := b.pools[bs.key]
		if p == nil {
			p = &pool{bs: bs}
			b.pools[bs.key] = p
		}
		p.lastUsed = time.Now()
		if len(p.ready) == 0 {
			b.mu.Unlock()
			return nil
		}
		bx := p.ready[0]
		p.ready = p.ready[1:]
		b.mu.Unlock()
		st, err := b.api.ContainerInspect(ctx, bx.id)
		if err == nil && st.State != nil && st.State.Running {
			return bx
		}
		b.log.Warn("pool container is gone", "container", bx.name)
		b.cleanup(bx)
	}
}

func (b *Backend) refill(bs *built) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pools[bs.key]
	if b.closed || p == nil {
		return
	}
	if p.failures >= 3 && time.Since(p.lastFail) < 30*time.Second {
		return // the engine keeps refusing: do not hammer it
	}
	for n := bs.spec.Pool - len(p.ready) - p.filling; n > 0; n-- {
		p.filling++
		b.wg.Add(1)
		go b.fillOne(p)
	}
}

func (b *Backend) fillOne(p *pool) {
	defer b.wg.Done()
	bx, err := b.create(b.bg, p.bs, true, map[string]string{LabelPool: "1", LabelPer: "connection"})
	if err == nil {
		if _, err = b.start(b.bg, bx); err != nil {
			b.cleanup(bx)
		}
	}
	b.mu.Lock()
	p.filling--
	if err != nil {
		p.failures++
		p.lastFail = time.Now()
		b.mu.Unlock()
		if b.bg.Err() == nil {
			b.log.Error("fill container pool", "target", p.bs.target, "err", err)
		}
		return
	}
	p.failures = 0
	if b.closed || b.pools[p.bs.key] != p {
		b.mu.Unlock()
		b.cleanup(bx)
		return
	}
	p.ready = append(p.ready, bx)
	b.mu.Unlock()
}

// reaper removes per-user containers idle past their TTL and pools not
// used for PoolIdleTTL, until Close.
func (b *Backend) reaper() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-b.bg.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var gone []*box
		b.mu.Lock()
		for k, e := range b.warm {
			if e.bx != nil && e.conns == 0 && now.Sub(e.lastUsed) > e.ttl {
				delete(b.warm, k)
				gone = append(gone, e.bx)
			}
		}
		for k, p := range b.pools {
			if now.Sub(p.lastUsed) > b.cfg.PoolIdleTTL && p.filling == 0 {
				delete(b.pools, k)
				gone = append(gone, p.ready...)
			}
		}
		b.mu.Unlock()
		for _, bx := range gone {
			b.log.Info("removing idle container", "container", bx.name, "target", bx.target)
			if err := b.cleanup(bx); err != nil {
				b.log.Error("remove idle container", "container", bx.name, "err", err)
			}
		}
	}
}
