package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// testLiveSessions covers the live session registry.
func testLiveSessions(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if ls, err := s.ListLiveSessions(ctx); err != nil || len(ls) != 0 {
		t.Fatalf("empty store: %+v, %v", ls, err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := gate.LiveSession{ID: "s1", GateID: "g1", User: "alice", Target: "web-1", Login: "root", KeyFP: "SHA256:abc", Started: t0}
	b := gate.LiveSession{ID: "s2", GateID: "g2", User: "bob", Target: "db-1", Started: t0.Add(time.Second)}
	mustOK(t, s.AddLiveSession(ctx, a))
	mustOK(t, s.AddLiveSession(ctx, b))
	if err := s.AddLiveSession(ctx, a); !errors.Is(err, store.ErrExists) {
		t.Errorf("add twice: %v, want ErrExists", err)
	}
	mustOK(t, s.UpdateLiveSession(ctx, "s1", 10, 2000))
	if err := s.UpdateLiveSession(ctx, "nope", 1, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update unknown: %v, want ErrNotFound", err)
	}
	ls, err := s.ListLiveSessions(ctx)
	mustOK(t, err)
	if len(ls) != 2 || ls[0].ID != "s1" || ls[1].ID != "s2" {
		t.Fatalf("list: %+v", ls)
	}
	if l := ls[0]; l.GateID != "g1" || l.User != "alice" || l.Target != "web-1" || l.Login != "root" || l.KeyFP != "SHA256:abc" || ls[1].KeyFP != "" ||
		!l.Started.Equal(t0) || l.BytesIn != 10 || l.BytesOut != 2000 || l.KillRequested || l.Updated.IsZero() {
		t.Errorf("s1: %+v", l)
	}
	// Kill requests reach the gate that owns the session only.
	if ids, err := s.KillRequests(ctx, "g1"); err != nil || len(ids) != 0 {
		t.Errorf("kill requests before any: %v, %v", ids, err)
	}
	mustOK(t, s.RequestKill(ctx, "s1"))
	if err := s.RequestKill(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("kill unknown: %v, want ErrNotFound", err)
	}
	if ids, err := s.KillRequests(ctx, "g1"); err != nil || len(ids) != 1 || ids[0] != "s1" {
		t.Errorf("kill requests g1: %v, %v", ids, err)
	}
	if ids, err := s.KillRequests(ctx, "g2"); err != nil || len(ids) != 0 {
		t.Errorf("kill requests g2: %v, %v", ids, err)
	}
	mustOK(t, s.RemoveLiveSession(ctx, "s1"))
	if err := s.RemoveLiveSession(ctx, "s1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("remove twice: %v, want ErrNotFound", err)
	}
	// Many at once, unknown ids skipped; none is no statement at all.
	for _, id := range []string{"m1", "m2", "m3"} {
		mustOK(t, s.AddLiveSession(ctx, gate.LiveSession{ID: id, GateID: "g1", User: "alice", Target: "web-1"}))
	}
	mustOK(t, s.RemoveLiveSessions(ctx, nil))
	mustOK(t, s.RemoveLiveSessions(ctx, []string{"m1", "nope", "m3"}))
	ls, err = s.ListLiveSessions(ctx)
	mustOK(t, err)
	if len(ls) != 2 || ls[0].ID != "s2" || ls[1].ID != "m2" {
		t.Errorf("after removing m1 and m3: %+v", ls)
	}
	mustOK(t, s.RemoveLiveSession(ctx, "m2"))
	// A gate's restart clears its own stale rows, not another gate's.
	mustOK(t, s.AddLiveSession(ctx, gate.LiveSession{ID: "s3", GateID: "g1", User: "alice", Target: "web-1"}))
	mustOK(t, s.ClearLiveSessions(ctx, "g1"))
	ls, err = s.ListLiveSessions(ctx)
	mustOK(t, err)
	if len(ls) != 1 || ls[0].ID != "s2" {
		t.Errorf("after clearing g1: %+v", ls)
	}
}
