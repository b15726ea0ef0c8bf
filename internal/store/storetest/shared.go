package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// runShared is the part of the suite for the state gates share: TOTP grace
// windows, per-account failure counters, the container registry and the
// batched live-session update.
func runShared(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("TOTPGrace", func(t *testing.T) { testTOTPGrace(t, open) })
	t.Run("Failures", func(t *testing.T) { testFailures(t, open) })
	t.Run("Containers", func(t *testing.T) { testContainers(t, open) })
	t.Run("LiveBatch", func(t *testing.T) { testLiveBatch(t, open) })
}

func testTOTPGrace(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if u, err := s.TOTPGraceUntil(ctx, "alice", "SHA256:k", "192.0.2.1"); err != nil || !u.IsZero() {
		t.Fatalf("none: %v, %v", u, err)
	}
	until := time.Now().Add(time.Hour).Truncate(time.Microsecond).UTC()
	mustOK(t, s.PutTOTPGrace(ctx, "alice", "SHA256:k", "192.0.2.1", until))
	if u, err := s.TOTPGraceUntil(ctx, "alice", "SHA256:k", "192.0.2.1"); err != nil || !u.Equal(until) {
		t.Fatalf("got %v, %v; want %v", u, err, until)
	}
	for _, k := range [][3]string{{"bob", "SHA256:k", "192.0.2.1"}, {"alice", "SHA256:other", "192.0.2.1"}, {"alice", "SHA256:k", "192.0.2.2"}} {
		if u, err := s.TOTPGraceUntil(ctx, k[0], k[1], k[2]); err != nil || !u.IsZero() {
			t.Errorf("%v: %v, %v; want none (bound to user, credential and address)", k, u, err)
		}
	}
	later := until.Add(time.Hour)
	mustOK(t, s.PutTOTPGrace(ctx, "alice", "SHA256:k", "192.0.2.1", later))
	if u, _ := s.TOTPGraceUntil(ctx, "alice", "SHA256:k", "192.0.2.1"); !u.Equal(later) {
		t.Fatalf("replaced: %v, want %v", u, later)
	}
}

func testFailures(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const window, lock = time.Minute, 10 * time.Minute
	if u, err := s.FailureLockedUntil(ctx, store.FailPassword, "alice"); err != nil || !u.IsZero() {
		t.Fatalf("none: %v, %v", u, err)
	}
	for i := 0; i < 2; i++ {
		u, locked, err := s.CountFailure(ctx, store.FailPassword, "alice", t0.Add(time.Duration(i)*time.Second), 3, window, lock)
		if err != nil || locked || !u.IsZero() {
			t.Fatalf("failure %d: %v %v %v", i+1, u, locked, err)
		}
	}
	// Another kind, another user: counted apart.
	if _, locked, err := s.CountFailure(ctx, store.FailCode, "alice", t0, 3, window, lock); err != nil || locked {
		t.Fatalf("code failure: %v %v", locked, err)
	}
	at := t0.Add(2 * time.Second)
	u, locked, err := s.CountFailure(ctx, store.FailPassword, "alice", at, 3, window, lock)
	if err != nil || !locked || !u.Equal(at.Add(lock)) {
		t.Fatalf("third failure: %v %v %v; want locked until %v", u, locked, err, at.Add(lock))
	}
	if got, err := s.FailureLockedUntil(ctx, store.FailPassword, "alice"); err != nil || !got.Equal(at.Add(lock)) {
		t.Fatalf("locked until %v, %v", got, err)
	}
	if got, _ := s.FailureLockedUntil(ctx, store.FailPassword, "bob"); !got.IsZero() {
		t.Fatalf("bob locked: %v", got)
	}
	// While locked, failures do not extend the lock.
	for i := 0; i < 5; i++ {
		if u, locked, _ := s.CountFailure(ctx, store.FailPassword, "alice", at.Add(time.Minute), 3, window, lock); locked || !u.Equal(at.Add(lock)) {
			t.Fatalf("failure while locked: %v %v", u, locked)
		}
	}
	// A window that ran out starts afresh: two old failures do not count.
	s2 := open(t)
	mustCount := func(at time.Time) bool {
		t.Helper()
		_, locked, err := s2.CountFailure(ctx, store.FailCode, "carol", at, 3, window, lock)
		mustOK(t, err)
		return locked
	}
	mustCount(t0)
	mustCount(t0.Add(time.Second))
	if mustCount(t0.Add(window + time.Second)) {
		t.Fatal("locked by failures from an expired window")
	}
	// limit 1: the first failure locks.
	if _, locked, err := s2.CountFailure(ctx, store.FailCode, "dave", t0, 1, window, lock); err != nil || !locked {
		t.Fatalf("limit 1: %v %v", locked, err)
	}
}

func warm(id, key, user, kind, gateID string, used time.Time) gate.WarmContainer {
	return gate.WarmContainer{ID: id, Name: "sshgate-" + id, Target: "box", Key: key, User: user, Kind: kind, Gate: gateID,
		Transport: "socket", Dir: "/var/lib/sshgate/containers/" + id, HostKey: "ssh-ed25519 AAAA" + id, RunAs: "1000",
		IdleTTL: time.Minute, LastUsed: used, Created: used}
}

func testContainers(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	now := time.Now().Truncate(time.Microsecond).UTC()
	if cs, err := s.ListContainers(ctx); err != nil || cs == nil || len(cs) != 0 {
		t.Fatalf("empty: %#v, %v", cs, err)
	}
	mustOK(t, s.RegisterGate(ctx, gate.GateInfo{ID: "ga", Started: now, Heartbeat: now}))
	mustOK(t, s.RegisterGate(ctx, gate.GateInfo{ID: "gdead", Started: now.Add(-time.Hour), Heartbeat: now.Add(-time.Hour)}))
	alive := now.Add(-time.Minute)

	u1 := warm("c1", "k", "alice", gate.ContainerPerUser, "ga", now)
	mustOK(t, s.PutContainer(ctx, u1))
	if err := s.PutContainer(ctx, warm("c1b", "k", "alice", gate.ContainerPerUser, "gb", now)); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second per-user container for one key and user: %v, want ErrExists", err)
	}
	mustOK(t, s.PutContainer(ctx, warm("c2", "k", "bob", gate.ContainerPerUser, "gdead", now.Add(-time.Hour))))
	mustOK(t, s.PutContainer(ctx, warm("c3", "k", "", gate.ContainerConn, "gdead", now)))
	mustOK(t, s.PutContainer(ctx, warm("p1", "k", "", gate.ContainerPool, "ga", now)))
	cs, err := s.ListContainers(ctx)
	mustOK(t, err)
	if len(cs) != 4 || cs[0].ID != "c2" || cs[1] != u1 {
		t.Fatalf("list: %+v\nwant c2 first (created first), then %+v", cs, u1)
	}

	// A live owner's container is shared, not adopted.
	c, adopted, err := s.ClaimContainer(ctx, "k", "alice", "gb", alive)
	if err != nil || adopted || c.ID != "c1" || c.Gate != "ga" {
		t.Fatalf("claim a live gate's container: %+v %v %v", c, adopted, err)
	}
	// A dead owner's is adopted.
	c, adopted, err = s.ClaimContainer(ctx, "k", "bob", "gb", alive)
	if err != nil || !adopted || c.ID != "c2" || c.Gate != "gb" {
		t.Fatalf("claim a dead gate's container: %+v %v %v", c, adopted, err)
	}
	if _, _, err := s.ClaimContainer(ctx, "k", "carol", "gb", alive); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim none: %v", err)
	}
	if _, _, err := s.ClaimContainer(ctx, "other", "alice", "gb", alive); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim another key: %v", err)
	}

	// Removal: never a live gate's container that is still in use.
	if ok, err := s.ClaimRemoval(ctx, "c1", "gb", alive, now); err != nil || ok {
		t.Fatalf("gb removes ga's container: %v %v", ok, err)
	}
	if ok, err := s.ClaimRemoval(ctx, "c1", "ga", alive, now.Add(-time.Second)); err != nil || ok {
		t.Fatalf("ga removes its container used since: %v %v", ok, err)
	}
	// A dead gate's per-connection container: whatever its last use.
	if ok, err := s.ClaimRemoval(ctx, "c3", "gb", alive, now.Add(-time.Hour)); err != nil || !ok {
		t.Fatalf("gb removes a dead gate's per-connection container: %v %v", ok, err)
	}
	if ok, _ := s.ClaimRemoval(ctx, "c3", "gb", alive, now); ok {
		t.Fatal("claimed twice")
	}

	// Touch keeps it; hand-over frees per-user and pool containers only.
	later := now.Add(time.Minute)
	mustOK(t, s.TouchContainers(ctx, []string{"c1", "p1", "nope"}, later))
	mustOK(t, s.TouchContainers(ctx, []string{"c1"}, now)) // an earlier use: last use stays later
	mustOK(t, s.PutContainer(ctx, warm("c4", "k", "", gate.ContainerConn, "ga", now)))
	n, err := s.ReleaseContainers(ctx, "ga")
	if err != nil || n != 2 {
		t.Fatalf("release: %d %v, want 2", n, err)
	}
	byID := map[string]gate.WarmContainer{}
	cs, _ = s.ListContainers(ctx)
	for _, c := range cs {
		byID[c.ID] = c
	}
	if byID["c1"].Gate != "" || byID["p1"].Gate != "" || byID["c4"].Gate != "ga" || !byID["c1"].LastUsed.Equal(later) {
		t.Fatalf("after release: %+v", byID)
	}
	// A free container used after idleBefore is kept; before, removed.
	if ok, _ := s.ClaimRemoval(ctx, "c1", "gb", alive, later); ok {
		t.Fatal("free container removed while not idle")
	}
	if ok, _ := s.ClaimRemoval(ctx, "c1", "gb", alive, later.Add(time.Second)); !ok {
		t.Fatal("idle free container not removable")
	}

	// Pools: a free one is taken once, and becomes a per-connection one.
	c, err = s.TakePooled(ctx, "k", "gb", alive, later)
	if err != nil || c.ID != "p1" || c.Kind != gate.ContainerConn || c.Gate != "gb" {
		t.Fatalf("take pooled: %+v %v", c, err)
	}
	if _, err := s.TakePooled(ctx, "k", "gb", alive, later); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("take from an empty pool: %v", err)
	}
	mustOK(t, s.PutContainer(ctx, warm("p2", "k", "", gate.ContainerPool, "ga", now)))
	if _, err := s.TakePooled(ctx, "k", "gb", alive, later); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("took a live gate's pool container: %v", err)
	}
	mustOK(t, s.RemoveContainer(ctx, "p2"))
	mustOK(t, s.RemoveContainer(ctx, "p2"))

	// A placeholder replaced by its container, by its gate only.
	ph := warm("pending-1", "k", "frank", gate.ContainerPerUser, "ga", now)
	ph.Dir, ph.HostKey = "", ""
	mustOK(t, s.PutContainer(ctx, ph))
	if err := s.PutContainer(ctx, warm("f2", "k", "frank", gate.ContainerPerUser, "gb", now)); !errors.Is(err, store.ErrExists) {
		t.Fatalf("a second per-user container beside a placeholder: %v", err)
	}
	real := warm("f1", "k", "frank", gate.ContainerPerUser, "gb", later)
	if err := s.ReplaceContainer(ctx, "pending-1", real); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another gate replaced the placeholder: %v", err)
	}
	real.Gate = "ga"
	if err := s.ReplaceContainer(ctx, "pending-1", warm("c4", "k", "frank", gate.ContainerPerUser, "ga", later)); !errors.Is(err, store.ErrExists) {
		t.Fatalf("replaced with a taken id: %v", err)
	}
	mustOK(t, s.ReplaceContainer(ctx, "pending-1", real))
	c, _, err = s.ClaimContainer(ctx, "k", "frank", "ga", alive)
	if err != nil || c != real {
		t.Fatalf("after replace: %+v %v, want %+v", c, err, real)
	}
	if err := s.ReplaceContainer(ctx, "pending-1", real); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("replaced a placeholder twice: %v", err)
	}
}

func testLiveBatch(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	now := time.Now()
	var counts []gate.LiveCount
	for i := 0; i < 1500; i++ {
		id := "s" + itoa(i)
		mustOK(t, s.AddLiveSession(ctx, gate.LiveSession{ID: id, GateID: "ga", User: "u", Target: "t", Started: now, Updated: now}))
		counts = append(counts, gate.LiveCount{ID: id, BytesIn: int64(i), BytesOut: int64(2 * i)})
	}
	counts = append(counts, gate.LiveCount{ID: "gone", BytesIn: 1})
	mustOK(t, s.UpdateLiveSessions(ctx, counts))
	mustOK(t, s.UpdateLiveSessions(ctx, nil))
	ls, err := s.ListLiveSessions(ctx)
	mustOK(t, err)
	if len(ls) != 1500 {
		t.Fatalf("%d sessions", len(ls))
	}
	for _, l := range ls {
		var i int
		for _, c := range l.ID[1:] {
			i = i*10 + int(c-'0')
		}
		if l.BytesIn != int64(i) || l.BytesOut != int64(2*i) {
			t.Fatalf("%s: %d/%d", l.ID, l.BytesIn, l.BytesOut)
		}
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// Races checks, with two handles on one database standing for two gates,
// that what must happen once happens once when both try at the same time:
// a TOTP step is accepted by one, a free container is adopted by one, a
// pool container is taken by one, and failures counted by both all count.
func Races(t *testing.T, open2 func(t *testing.T) (store.Store, store.Store)) {
	ctx := context.Background()
	a, b := open2(t)
	now := time.Now().Truncate(time.Microsecond)
	mustOK(t, a.AddUser(ctx, gate.User{Name: "alice"}))
	mustOK(t, a.PutTOTP(ctx, gate.TOTP{User: "alice", Secret: "sealed", Active: true}))
	mustOK(t, a.RegisterGate(ctx, gate.GateInfo{ID: "ga", Started: now}))
	mustOK(t, b.RegisterGate(ctx, gate.GateInfo{ID: "gb", Started: now}))
	const rounds = 20
	for i := 0; i < rounds; i++ {
		id := itoa(i)
		mustOK(t, a.PutContainer(ctx, warm("u"+id, "k", "user"+id, gate.ContainerPerUser, "", now)))
		mustOK(t, a.PutContainer(ctx, warm("p"+id, "k", "", gate.ContainerPool, "", now)))
	}
	type res struct {
		step, adopt bool
		pool        string
		err         error
	}
	for i := 0; i < rounds; i++ {
		id := itoa(i)
		var wg sync.WaitGroup
		out := make([]res, 2)
		for j, s := range []store.Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := &out[j]
				gid := []string{"ga", "gb"}[j]
				var err1, err2, err3 error
				r.step, err1 = s.UseTOTPStep(ctx, "alice", int64(1000+i))
				_, r.adopt, err2 = s.ClaimContainer(ctx, "k", "user"+id, gid, now.Add(-time.Minute))
				c, err := s.TakePooled(ctx, "k", gid, now.Add(-time.Minute), now)
				if err == nil {
					r.pool = c.ID
				} else if !errors.Is(err, store.ErrNotFound) {
					err3 = err
				}
				_, _, err4 := s.CountFailure(ctx, store.FailCode, "alice", now, 1_000_000, time.Hour, time.Hour)
				r.err = errors.Join(err1, err2, err3, err4)
			}()
		}
		wg.Wait()
		for _, r := range out {
			mustOK(t, r.err)
		}
		if out[0].step == out[1].step {
			t.Fatalf("round %d: both or neither gate accepted one TOTP step: %+v", i, out)
		}
		if out[0].adopt == out[1].adopt {
			t.Fatalf("round %d: both or neither gate adopted the free container: %+v", i, out)
		}
		if out[0].pool != "" && out[0].pool == out[1].pool {
			t.Fatalf("round %d: both gates took pool container %s", i, out[0].pool)
		}
	}
	// Two gates recording a per-user container for one key and user at
	// once (both started one): exactly one row, the other told ErrExists.
	for i := 0; i < rounds; i++ {
		id := itoa(i)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, s := range []store.Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				gid := []string{"ga", "gb"}[j]
				errs[j] = s.PutContainer(ctx, warm("n"+id+gid, "k2", "user"+id, gate.ContainerPerUser, gid, now))
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, store.ErrExists):
				t.Fatalf("round %d: put: %v", i, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of two racing gates recorded a per-user container, want 1: %v", i, won, errs)
		}
		c, adopted, err := b.ClaimContainer(ctx, "k2", "user"+id, "gb", now.Add(-time.Minute))
		if err != nil || adopted || (c.Gate != "ga" && c.Gate != "gb") {
			t.Fatalf("round %d: the winner's container: %+v %v %v", i, c, adopted, err)
		}
	}
	// Every failure counted: 2 per round, the limit is far away, so the
	// next one on a limit of 2*rounds+1 locks.
	if _, locked, err := a.CountFailure(ctx, store.FailCode, "alice", now, 2*rounds+1, time.Hour, time.Hour); err != nil || !locked {
		t.Fatalf("failures counted by two gates at once were lost: locked %v, %v", locked, err)
	}
	cs, err := a.ListContainers(ctx)
	mustOK(t, err)
	taken := 0
	for _, c := range cs {
		if c.Kind == gate.ContainerConn {
			taken++
		}
	}
	if taken != rounds {
		t.Fatalf("%d pool containers taken, want %d (one per take)", taken, rounds)
	}
}
