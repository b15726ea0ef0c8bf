package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// testGates covers the registry of gates sharing the store.
func testGates(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if gs, err := s.ListGates(ctx); err != nil || gs == nil || len(gs) != 0 {
		t.Fatalf("empty store: %#v, %v", gs, err)
	}
	if err := s.RegisterGate(ctx, gate.GateInfo{}); err == nil {
		t.Error("register with an empty id succeeded")
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	mustOK(t, s.RegisterGate(ctx, gate.GateInfo{ID: "gb", Address: "10.0.0.2:2222", Version: "v1", Started: t0}))
	mustOK(t, s.RegisterGate(ctx, gate.GateInfo{ID: "ga", Address: "10.0.0.1:2222", Version: "v1", Started: t0, Heartbeat: t0.Add(time.Second), Sessions: 3}))
	gs, err := s.ListGates(ctx)
	mustOK(t, err)
	if len(gs) != 2 || gs[0].ID != "ga" || gs[1].ID != "gb" {
		t.Fatalf("list: %+v", gs)
	}
	if g := gs[0]; g.Address != "10.0.0.1:2222" || g.Version != "v1" || !g.Started.Equal(t0) || !g.Heartbeat.Equal(t0.Add(time.Second)) || g.Sessions != 3 {
		t.Errorf("ga: %+v", g)
	}
	if g := gs[1]; !g.Heartbeat.Equal(t0) || g.Sessions != 0 {
		t.Errorf("gb: heartbeat %v sessions %d, want its start and 0", g.Heartbeat, g.Sessions)
	}

	t1 := t0.Add(time.Minute)
	mustOK(t, s.GateHeartbeat(ctx, "gb", 7, t1))
	if err := s.GateHeartbeat(ctx, "nope", 1, t1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("heartbeat of an unknown gate: %v, want ErrNotFound", err)
	}
	gs, _ = s.ListGates(ctx)
	if g := gs[1]; !g.Heartbeat.Equal(t1) || g.Sessions != 7 || !g.Started.Equal(t0) {
		t.Errorf("gb after heartbeat: %+v", g)
	}

	// A restart of the same gate replaces its row.
	t2 := t1.Add(time.Hour)
	mustOK(t, s.RegisterGate(ctx, gate.GateInfo{ID: "gb", Address: "10.0.0.2:2223", Version: "v2", Started: t2}))
	gs, _ = s.ListGates(ctx)
	if g := gs[1]; g.Address != "10.0.0.2:2223" || g.Version != "v2" || !g.Started.Equal(t2) || !g.Heartbeat.Equal(t2) || g.Sessions != 0 {
		t.Errorf("gb after restart: %+v", g)
	}

	mustOK(t, s.RemoveGate(ctx, "ga"))
	if err := s.RemoveGate(ctx, "ga"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("remove twice: %v, want ErrNotFound", err)
	}
	if gs, _ := s.ListGates(ctx); len(gs) != 1 || gs[0].ID != "gb" {
		t.Errorf("after remove: %+v", gs)
	}
}
