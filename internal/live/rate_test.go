package live

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/relay"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/store/postgres"
	"github.com/sshgate/sshgate/internal/store/postgres/pgtest"
)

// counting counts the statements the registry and the heartbeat send.
type counting struct {
	store.Store
	reads, writes atomic.Int64
}

func (c *counting) KillRequests(ctx context.Context, g string) ([]string, error) {
	c.reads.Add(1)
	return c.Store.KillRequests(ctx, g)
}

func (c *counting) UpdateLiveSessions(ctx context.Context, l []gate.LiveCount) error {
	c.writes.Add(1)
	return c.Store.UpdateLiveSessions(ctx, l)
}

func (c *counting) GateHeartbeat(ctx context.Context, id string, n int, at time.Time) error {
	c.writes.Add(1)
	return c.Store.GateHeartbeat(ctx, id, n, at)
}

// With 1,000 live sessions moving bytes on a real PostgreSQL, each update
// round is one statement, not one per session: the figure is logged as the
// steady-state write rate at the default intervals.
func TestWriteRateAt1000Sessions(t *testing.T) {
	ctx := context.Background()
	pg, err := postgres.Open(ctx, postgres.Options{DSN: pgtest.Schema(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	st := &counting{Store: pg}
	r, err := New(ctx, st, "g1", slog.New(slog.DiscardHandler), Options{Poll: time.Hour, UpdateEvery: 5})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	cs := make([]*relay.Counters, n)
	for i := range cs {
		cs[i] = &relay.Counters{}
		defer r.Start(gate.LiveSession{ID: fmt.Sprint("s", i), User: "alice", Target: "web"}, cs[i], func() {})()
	}
	const rounds = 10
	t0 := time.Now()
	for round := 1; round <= rounds; round++ {
		for _, c := range cs {
			c.In.Add(100)
			c.Out.Add(1000)
		}
		r.poll(ctx, round%5 == 0)
	}
	took := time.Since(t0)
	if w := st.writes.Load(); w != rounds/5 {
		t.Fatalf("%d rounds with %d sessions made %d writes, want %d (one per update round)", rounds, n, w, rounds/5)
	}
	ls, err := pg.ListLiveSessions(ctx)
	if err != nil || len(ls) != n || ls[0].BytesOut != rounds*1000 {
		t.Fatalf("%d sessions listed (%v), first %+v", len(ls), err, ls[0])
	}
	// Steady state at the defaults (poll 1 s, counts every 5th poll,
	// heartbeat every 10 s): 1 read/s, 0.2 + 0.1 writes/s, whatever n.
	perSec := 1.0/5 + 1.0/HeartbeatEvery.Seconds()
	t.Logf("%d live sessions: %d polls in %s (%s each); store writes %.1f/s at the default intervals (one batched UPDATE every 5 s + one heartbeat every %s), reads 1/s",
		n, rounds, took.Round(time.Millisecond), (took / rounds).Round(time.Microsecond), perSec, HeartbeatEvery)
}
