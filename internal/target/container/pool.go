package container

import (
	"context"
	"net"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

// Warm pools: Pool containers per spec key, started with the keeper as main
// process and labelled sshgate.pool=1. Open takes one (its agent's waiting
// connection when it has one, else checking it is still running and
// connecting like a per-user container) and refills the pool in the
// background after refillDelay. The taken container belongs to that
// connection and is removed on Release.
type pool struct {
	s        *Spec
	ready    []*box
	filling  int
	lastUsed time.Time
	failures int
	lastFail time.Time
}

// Refills stop for refillPause after refillFailures failures in a row.
const (
	refillFailures = 3
	refillPause    = 30 * time.Second
)

// Prewarm fills the pool of t now (when t has a pool), rather than on the
// first Open.
func (b *Backend) Prewarm(ctx context.Context, t gate.Target) error {
	s, err := b.eng.Prepare(t)
	if err != nil {
		return err
	}
	if s.PerUser || s.Pool <= 0 {
		return nil
	}
	b.mu.Lock()
	if b.pools[s.Key] == nil {
		b.pools[s.Key] = &pool{s: s, lastUsed: b.cfg.Now()}
	}
	b.mu.Unlock()
	b.refill(s)
	return nil
}

// PoolReady is how many pre-started containers the pool of t holds now.
func (b *Backend) PoolReady(t gate.Target) int {
	s, err := b.eng.Prepare(t)
	if err != nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.pools[s.Key]; p != nil {
		return len(p.ready)
	}
	return 0
}

// takePool returns a pool container for this connection alone, or nil
// when the pool is empty. spare is its agent's waiting connection when it
// had one (then the container runs without asking the engine), else nil.
func (b *Backend) takePool(ctx context.Context, s *Spec) (_ *box, spare net.Conn) {
	for {
		b.mu.Lock()
		p := b.pools[s.Key]
		if p == nil {
			p = &pool{s: s}
			b.pools[s.Key] = p
		}
		p.lastUsed = b.cfg.Now()
		if len(p.ready) == 0 {
			b.mu.Unlock()
			return nil, nil
		}
		bx := p.ready[0]
		p.ready = p.ready[1:]
		b.mu.Unlock()
		if c := bx.warm.trySpare(); c != nil {
			return bx, c
		}
		st, err := b.eng.Inspect(ctx, bx.ref(), time.Time{})
		if err == nil && st.Running {
			return bx, nil
		}
		b.log.Warn("pool container is gone", "container", bx.name)
		b.cleanup(bx)
	}
}

// refillDelay is how long after Open a pool is refilled: long enough for
// the connection's SSH handshake with its agent and its first session
// (a few ms once the agent's connection is waiting) to finish before the
// engine's create and start take the CPU. Measured in the bench: with the
// refill at once, "target connected" of a pool connection took ~10 ms
// (median) against ~3 ms for a per-user one.
const refillDelay = 250 * time.Millisecond

// refillSoon refills the pool of s after refillDelay (unless the backend
// closes first); Close waits for it through fills.
func (b *Backend) refillSoon(s *Spec) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.fills.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.fills.Done()
		t := time.NewTimer(refillDelay)
		defer t.Stop()
		select {
		case <-t.C:
			b.refill(s)
		case <-b.bg.Done():
		}
	}()
}

func (b *Backend) refill(s *Spec) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pools[s.Key]
	if b.closed || p == nil {
		return
	}
	if p.failures >= refillFailures && b.cfg.Now().Sub(p.lastFail) < refillPause {
		return // the engine keeps refusing: do not hammer it
	}
	for n := s.Pool - len(p.ready) - p.filling; n > 0; n-- {
		p.filling++
		b.fills.Add(1)
		go b.fillOne(p)
	}
}

func (b *Backend) fillOne(p *pool) {
	defer b.fills.Done()
	select {
	case b.fillSlots <- struct{}{}:
	case <-b.bg.Done():
		b.mu.Lock()
		p.filling--
		b.mu.Unlock()
		return
	}
	b.yieldToLiveStarts()
	bx, err := b.fillCreate(p)
	<-b.fillSlots
	b.mu.Lock()
	p.filling--
	if err != nil {
		p.failures++
		p.lastFail = b.cfg.Now()
		b.mu.Unlock()
		if b.bg.Err() == nil {
			b.log.Error("fill container pool", "target", p.s.Target, "err", err)
		}
		return
	}
	p.failures = 0
	if b.closed || b.pools[p.s.Key] != p {
		b.mu.Unlock()
		b.cleanup(bx)
		return
	}
	p.ready = append(p.ready, bx)
	b.mu.Unlock()
}

// fillYield bounds how long a pool fill waits for live starts to end: a
// stream of cold connections that never pauses still gets its pool back.
const fillYield = 5 * time.Second

// fillYieldPoll is how often a waiting fill looks again.
const fillYieldPoll = 20 * time.Millisecond

// yieldToLiveStarts holds a pool fill, for at most fillYield, while
// containers are being started for connections that wait on them: on a
// small machine the engine's create and start are the cost of a burst, and
// a fill then only makes the users in it wait longer for the sake of the
// ones after it (measured in the bench's burst of shells, where 40 of 50
// start cold while the pool of 10 refills).
func (b *Backend) yieldToLiveStarts() {
	if b.liveStarts.Load() == 0 {
		return
	}
	deadline := time.NewTimer(fillYield)
	defer deadline.Stop()
	tick := time.NewTicker(fillYieldPoll)
	defer tick.Stop()
	for b.liveStarts.Load() > 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-b.bg.Done():
			return
		}
	}
}

// fillCreate creates and starts one pool container, holding a fill slot.
func (b *Backend) fillCreate(p *pool) (*box, error) {
	bx, err := b.create(b.bg, p.s, true, map[string]string{LabelPool: "1", LabelPer: "connection"}, gate.ContainerConn)
	if err != nil {
		return nil, err
	}
	if _, err := b.start(b.bg, bx); err != nil {
		b.cleanup(bx)
		return nil, err
	}
	return bx, nil
}
