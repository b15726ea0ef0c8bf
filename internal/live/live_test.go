package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
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
	if r.Count() != 0 {
		t.Fatalf("%d sessions counted after the end", r.Count())
	}
	r.poll(ctx, false) // removes the ended session's row
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

// removals counts the store's removal statements.
type removals struct {
	Store
	one, many atomic.Int64
	fail      atomic.Bool
}

func (c *removals) RemoveLiveSession(ctx context.Context, id string) error {
	c.one.Add(1)
	return errors.New("RemoveLiveSession is not used")
}

func (c *removals) RemoveLiveSessions(ctx context.Context, ids []string) error {
	c.many.Add(1)
	if c.fail.Load() {
		return errors.New("store down")
	}
	return c.Store.RemoveLiveSessions(ctx, ids)
}

// Sessions that end cost the store no write of their own: the next poll
// removes every ended session's row in one statement (again later if the
// store failed), and the registry's end removes what is still queued.
func TestEndedSessionsRemovedInOneStatement(t *testing.T) {
	ctx := context.Background()
	sq, err := sqlite.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	st := &removals{Store: sq}
	r, err := New(ctx, st, "g1", slog.New(slog.DiscardHandler), Options{Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	listed := func() int {
		t.Helper()
		ls, err := sq.ListLiveSessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(ls)
	}
	var ends []func()
	for i := 0; i < 5; i++ {
		ends = append(ends, r.Start(gate.LiveSession{ID: fmt.Sprint("s", i), User: "alice", Target: "web"}, &relay.Counters{}, func() {}))
	}
	if n := listed(); n != 5 {
		t.Fatalf("%d rows listed, want 5: a session is listed before it starts", n)
	}
	for _, end := range ends[:4] {
		end()
	}
	if st.one.Load()+st.many.Load() != 0 || r.Count() != 1 {
		t.Fatalf("ending 4 sessions made %d removal statements and left %d counted; want none and 1", st.one.Load()+st.many.Load(), r.Count())
	}
	st.fail.Store(true)
	r.poll(ctx, false)
	if n := listed(); n != 5 {
		t.Fatalf("%d rows listed after a failed removal, want 5", n)
	}
	st.fail.Store(false)
	r.poll(ctx, false)
	if n, m := listed(), st.many.Load(); n != 1 || m != 2 {
		t.Fatalf("after the poll: %d rows listed, %d removal statements; want 1 and 2 (one failed, one for all 4)", n, m)
	}
	// The last one ends as the gate stops: Run removes its row on the way out.
	ends[4]()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(rctx) }()
	cancel()
	<-done
	if n := listed(); n != 0 || st.one.Load() != 0 {
		t.Fatalf("after Run ended: %d rows listed, %d single removals", n, st.one.Load())
	}
}
