package live

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/relay"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// A stale row of this gate (a crash) and a row of another gate.
	must(t, st.AddLiveSession(ctx, gate.LiveSession{ID: "stale", GateID: "g1", User: "a", Target: "t"}))
	must(t, st.AddLiveSession(ctx, gate.LiveSession{ID: "other", GateID: "g2", User: "b", Target: "t"}))
	r, err := New(ctx, st, "g1", slog.New(slog.DiscardHandler), Options{Poll: time.Hour, UpdateEvery: 1})
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := st.ListLiveSessions(ctx)
	if len(ls) != 1 || ls[0].ID != "other" {
		t.Fatalf("after start: %+v", ls)
	}
	c := &relay.Counters{}
	killed := make(chan struct{}, 2)
	end := r.Start(gate.LiveSession{ID: "s1", User: "alice", Target: "web"}, c, func() { killed <- struct{}{} })
	c.In.Add(5)
	c.Out.Add(7)
	r.poll(ctx, true)
	ls, _ = st.ListLiveSessions(ctx)
	if len(ls) != 2 || ls[1].ID != "s1" || ls[1].GateID != "g1" || ls[1].BytesIn != 5 || ls[1].BytesOut != 7 {
		t.Fatalf("registered: %+v", ls)
	}
	must(t, st.RequestKill(ctx, "s1"))
	r.poll(ctx, false)
	r.poll(ctx, false) // a second poll does not kill again
	select {
	case <-killed:
	case <-time.After(10 * time.Second):
		t.Fatal("kill not called")
	}
	end()
	ls, _ = st.ListLiveSessions(ctx)
	if len(ls) != 1 {
		t.Fatalf("after end: %+v", ls)
	}
	select {
	case <-killed:
		t.Error("kill called twice")
	default:
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
