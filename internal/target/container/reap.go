package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
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
	}
}

// reapIdle removes per-user containers idle past their TTL and the pools
// not used for PoolIdleTTL.
func (b *Backend) reapIdle() {
	now := b.cfg.Now()
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

// ReapOrphans removes every container labelled with this gate's GateID that
// this Backend does not track (left by a crash or kill -9) and every stale
// directory under ContainersDir. Call it on start. It returns how many
// containers it removed.
func (b *Backend) ReapOrphans(ctx context.Context) (int, error) {
	list, err := b.eng.List(ctx, map[string]string{LabelGate: b.cfg.GateID})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
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
		if err := b.eng.Remove(ctx, Ref{ID: c.ID, Name: firstName(c.Names), Target: c.Labels[LabelTarget]}); err != nil {
			errs = append(errs, fmt.Errorf("remove orphan %s: %w", short(c.ID), err))
			continue
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
			b.mu.Lock()
			used := b.dirs[e.Name()]
			b.mu.Unlock()
			if used || !e.IsDir() {
				continue
			}
			d := &gateDir{path: filepath.Join(b.cfg.ContainersDir, e.Name())}
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
