package live

import (
	"context"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

func TestHeartbeat(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var n atomic.Int64
	n.Store(2)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := newHeartbeat(st, gate.GateInfo{ID: "g1", Address: "127.0.0.1:2222", Version: "v9", Started: t0}, func() int { return int(n.Load()) }, slog.New(slog.DiscardHandler))
	h.register()
	one := func() gate.GateInfo {
		t.Helper()
		gs, err := st.ListGates(ctx)
		if err != nil || len(gs) != 1 {
			t.Fatalf("gates: %+v, %v", gs, err)
		}
		return gs[0]
	}
	if g := one(); g.ID != "g1" || g.Address != "127.0.0.1:2222" || g.Version != "v9" || !g.Started.Equal(t0) || g.Sessions != 2 {
		t.Fatalf("registered: %+v", g)
	}
	n.Store(5)
	t1 := time.Now().Add(time.Minute).UTC()
	h.beat(t1)
	if g := one(); g.Sessions != 5 || !g.Heartbeat.Equal(t1) {
		t.Fatalf("after beat: %+v", g)
	}
	// Someone removed the row: the next beat registers the gate again.
	must(t, st.RemoveGate(ctx, "g1"))
	h.beat(time.Now())
	if g := one(); !g.Started.Equal(t0) || g.Sessions != 5 {
		t.Fatalf("re-registered: %+v", g)
	}
}

// The running heartbeat beats on its own and removes its row at Stop.
func TestHeartbeatRuns(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := StartHeartbeat(st, gate.GateInfo{ID: "g1"}, time.Millisecond, func() int { return 0 }, slog.New(slog.DiscardHandler))
	gs, err := st.ListGates(ctx)
	if err != nil || len(gs) != 1 {
		t.Fatalf("after start: %+v, %v", gs, err)
	}
	first := gs[0].Heartbeat
	deadline := time.Now().Add(10 * time.Second)
	for {
		gs, err = st.ListGates(ctx)
		if err == nil && len(gs) == 1 && gs[0].Heartbeat.After(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeat after %v: %+v, %v", first, gs, err)
		}
		runtime.Gosched()
	}
	h.Stop()
	if gs, err := st.ListGates(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("after stop: %+v, %v", gs, err)
	}
}
