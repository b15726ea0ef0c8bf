package recording

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"
)

// Retention bounds what the recordings directory keeps. Zero values keep
// everything.
type Retention struct {
	MaxAge   time.Duration // a recording last written longer ago is removed
	MaxTotal int64         // bytes of all recordings; the oldest go first past it
}

// PruneResult says what one Prune removed.
type PruneResult struct {
	Removed int
	Freed   int64
}

// Prune removes finished recordings (*.cast) that r does not keep: those
// last written before now-MaxAge, then the oldest until the rest fit in
// MaxTotal. A recording still being written is never removed, nor counted
// against MaxTotal's victims (it is counted in the total: a live session
// can push older ones out, never itself).
func (d *Dir) Prune(now time.Time, r Retention) (PruneResult, error) {
	var res PruneResult
	if r.MaxAge <= 0 && r.MaxTotal <= 0 {
		return res, nil
	}
	dir, err := d.root.Open(".")
	if err != nil {
		return res, fmt.Errorf("prune recordings: %w", err)
	}
	entries, err := dir.ReadDir(-1)
	_ = dir.Close()
	if err != nil {
		return res, fmt.Errorf("prune recordings: %w", err)
	}
	type file struct {
		name string
		size int64
		mod  time.Time
	}
	var files []file
	var total int64
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".cast") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		total += info.Size()
		if d.isLive(strings.TrimSuffix(name, ".cast")) {
			continue
		}
		files = append(files, file{name, info.Size(), info.ModTime()})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod.Before(files[j].mod) })
	var errs []error
	for _, f := range files {
		old := r.MaxAge > 0 && now.Sub(f.mod) > r.MaxAge
		over := r.MaxTotal > 0 && total > r.MaxTotal
		if !old && !over {
			continue
		}
		if err := d.root.Remove(f.name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		total -= f.size
		res.Removed++
		res.Freed += f.size
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("prune recordings: %w", errors.Join(errs...))
	}
	return res, nil
}

func (d *Dir) isLive(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.live[id]
}

func (d *Dir) setLive(id string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		if d.live == nil {
			d.live = map[string]bool{}
		}
		d.live[id] = true
	} else {
		delete(d.live, id)
	}
}
