package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

// reaper removes idle containers every ReapInterval until Close.
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
		b.reapIdle()
		// A few failed removals a tick, so that an engine that does not
		// answer cannot hold the reaper for long.
		if err := b.retryRemovals(maxRemovals); err != nil {
			b.log.Warn("container removal failed again", "err", err)
		}
	}
}

// reapIdle removes per-user containers idle past their TTL and the pools
// not used for PoolIdleTTL. With a Registry it first tells it which
// containers this gate serves, asks it before removing one of its own (a
// container another gate serves stays), forgets the other gates'
// containers it no longer serves, and sweeps the registry (see sweep).
func (b *Backend) reapIdle() {
	now := b.cfg.Now()
	reg := b.cfg.Registry
	if reg != nil {
		b.touch(now)
	}
	var gone, foreign []*box
	type idle struct {
		key string
		e   *warmEntry
	}
	var ask []idle
	b.mu.Lock()
	for k, e := range b.warm {
		if e.bx == nil || e.conns > 0 {
			continue
		}
		if e.foreign {
			delete(b.warm, k) // its last use is in the registry: the owner decides
			foreign = append(foreign, e.bx)
			continue
		}
		if now.Sub(e.lastUsed) > e.ttl {
			if reg != nil && e.bx.recorded {
				ask = append(ask, idle{k, e})
				continue
			}
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
	for _, bx := range foreign {
		b.dropForeign(bx)
	}
	for _, it := range ask {
		if b.askRemoval(it.key, it.e, now) {
			gone = append(gone, it.e.bx)
		}
	}
	for _, bx := range gone {
		b.log.Info("removing idle container", "container", bx.name, "target", bx.target)
		if err := b.cleanup(bx); err != nil {
			b.log.Error("remove idle container", "container", bx.name, "err", err)
		}
	}
	if reg != nil {
		b.sweep(now)
	}
}

// askRemoval claims the removal of an idle per-user container of this gate
// in the registry. true: the caller removes it (the entry is gone). When
// the registry keeps it, the entry follows what the registry says: used
// through another gate since (checked again after another TTL), another
// gate's now (foreign), or not the registry's container any more (stray:
// removed).
func (b *Backend) askRemoval(key string, e *warmEntry, now time.Time) bool {
	ctx, cancel := context.WithTimeout(b.bg, registryTimeout)
	defer cancel()
	bx := e.bx
	ok, err := b.cfg.Registry.ClaimRemoval(ctx, bx.id, b.cfg.GateID, b.alive(), now.Add(-e.ttl))
	if err != nil {
		b.log.Debug("claim removal of idle container", "container", bx.name, "err", err) // tried again next time
		return false
	}
	if ok {
		b.mu.Lock()
		bx.recorded = false // the row went with the claim
		remove := b.warm[key] == e && e.conns == 0
		if remove {
			delete(b.warm, key)
		}
		b.mu.Unlock()
		if !remove {
			// A connection came in meanwhile: keep it, and its row.
			b.record(ctx, bx, e.spec, gate.ContainerPerUser, e.user, e.ttl)
		}
		return remove
	}
	c, found, _, err := b.cfg.Registry.ClaimContainer(ctx, e.spec.Key, e.user, b.cfg.GateID, b.alive())
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err != nil || b.warm[key] != e:
	case !found || c.ID != bx.id:
		// The registry knows another container, or none: ours is stray.
		if e.conns == 0 {
			bx.recorded = false
			delete(b.warm, key)
			return true
		}
	case c.Gate != b.cfg.GateID:
		// Another gate took it over (it counted this one as dead).
		e.foreign = true
		delete(b.boxes, bx.id)
	default:
		// Used since (through another gate, or a touch after the last
		// release here): look again a TTL after that use.
		if c.LastUsed.After(e.lastUsed) {
			e.lastUsed = c.LastUsed
		} else {
			e.lastUsed = now
		}
	}
	return false
}

// ReapOrphans removes every container labelled with this gate's GateID that
// this Backend does not track (left by a crash or kill -9) and every stale
// directory under ContainersDir. Call it on start. It returns how many
// containers it removed. With a Registry, per-user containers it records
// stay (with their directories): they are the registry's to hand to a
// user again or to reap after their TTL, and another gate may serve them.
func (b *Backend) ReapOrphans(ctx context.Context) (int, error) {
	list, err := b.eng.List(ctx, map[string]string{LabelGate: b.cfg.GateID})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	rows := map[string]gate.WarmContainer{}
	dirsKept := map[string]bool{}
	if b.cfg.Registry != nil {
		cs, err := b.cfg.Registry.ListContainers(ctx)
		if err != nil {
			return 0, fmt.Errorf("list containers in the registry: %w", err)
		}
		for _, c := range cs {
			rows[c.ID] = c
			if c.Kind == gate.ContainerPerUser && c.Dir != "" {
				dirsKept[c.Dir] = true
			}
		}
	}
	n := 0
	var errs []error
	for _, c := range list {
		b.mu.Lock()
		_, mine := b.boxes[c.ID]
		b.mu.Unlock()
		if mine || c.Labels[LabelGate] != b.cfg.GateID {
			continue
		}
		r, recorded := rows[c.ID]
		if recorded && r.Kind == gate.ContainerPerUser {
			b.log.Info("kept per-user container of the registry", "id", short(c.ID), "names", c.Names, "owner", r.Gate)
			continue
		}
		if err := b.eng.Remove(ctx, Ref{ID: c.ID, Name: firstName(c.Names), Target: c.Labels[LabelTarget]}); err != nil {
			errs = append(errs, fmt.Errorf("remove orphan %s: %w", short(c.ID), err))
			continue
		}
		if recorded {
			if err := b.cfg.Registry.RemoveContainer(ctx, c.ID); err != nil {
				errs = append(errs, err)
			}
		}
		n++
		b.log.Info("removed orphan container", "id", short(c.ID), "names", c.Names)
	}
	if b.cfg.ContainersDir != "" {
		ents, err := os.ReadDir(b.cfg.ContainersDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("read containers directory: %w", err))
		}
		for _, e := range ents {
			p := filepath.Join(b.cfg.ContainersDir, e.Name())
			b.mu.Lock()
			used := b.dirs[e.Name()]
			b.mu.Unlock()
			if used || !e.IsDir() || dirsKept[p] {
				continue
			}
			d := &gateDir{path: p}
			if err := d.remove(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return n, errors.Join(errs...)
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}
