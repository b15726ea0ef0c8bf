package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target"
)

func TestPerUserReuseAndIdleTTL(t *testing.T) {
	f := newFixture(t, nil)
	tg := spec("shell", gate.DockerSpec{Per: "user", IdleTTL: "10m"})
	a1 := f.open(tg, "alice")
	a2 := f.open(tg, "alice")
	if n, execs := f.eng.count(); n != 1 || execs != 2 {
		t.Fatalf("alice twice: %d containers, %d agent execs; want 1 and 2", n, execs)
	}
	b1 := f.open(tg, "bob")
	if n, _ := f.eng.count(); n != 2 {
		t.Fatalf("bob: %d containers, want his own", n)
	}
	if got := f.eng.lastCreate.Labels; got[LabelUser] != "bob" || got[LabelPer] != "user" || got[LabelGate] != "gate-a" || got[LabelTarget] != "shell" {
		t.Errorf("labels %v", got)
	}

	// In use: never reaped, however long.
	f.clock.Advance(time.Hour)
	f.b.reapIdle()
	if n, _ := f.eng.count(); n != 2 {
		t.Fatalf("containers in use were reaped: %d left", n)
	}
	a1.Release(context.Background())
	a2.Release(context.Background())
	b1.Release(context.Background())
	f.clock.Advance(10 * time.Minute) // exactly the TTL: not past it
	f.b.reapIdle()
	if n, _ := f.eng.count(); n != 2 {
		t.Fatalf("reaped at the TTL: %d left", n)
	}
	// Alice comes back before expiry: her container is reused and its idle
	// time starts again when she leaves.
	f.open(tg, "alice").Release(context.Background())
	if n, execs := f.eng.count(); n != 2 || execs != 4 {
		t.Fatalf("alice's return: %d containers, %d execs", n, execs)
	}
	f.clock.Advance(time.Second)
	f.b.reapIdle()
	if n, _ := f.eng.count(); n != 1 {
		t.Fatalf("after bob's TTL: %d containers, want alice's only", n)
	}
	f.clock.Advance(10 * time.Minute)
	f.b.reapIdle()
	if n, _ := f.eng.count(); n != 0 {
		t.Fatalf("after alice's TTL: %d containers", n)
	}
}

func TestPerUserDefaultTTL(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.DefaultIdleTTL = time.Minute })
	f.open(spec("shell", gate.DockerSpec{Per: "user"}), "alice").Release(context.Background())
	f.clock.Advance(time.Minute + time.Second)
	f.b.reapIdle()
	if n, _ := f.eng.count(); n != 0 {
		t.Fatalf("%d containers after the default TTL", n)
	}
}

func TestPerUserGoneIsReplaced(t *testing.T) {
	f := newFixture(t, nil)
	tg := spec("shell", gate.DockerSpec{Per: "user"})
	f.open(tg, "alice").Release(context.Background())
	f.eng.set("id01", func(b *fakeBox) { b.running = false })
	f.open(tg, "alice")
	if f.eng.has("id01") || !f.eng.has("id02") {
		t.Fatalf("the stopped container was not replaced (removed %v)", f.eng.removed)
	}
}

// TestPoolFillsBounded: a pool of 6 is filled by at most PoolFills
// creations at once, and a live Open is not queued behind them.
func TestPoolFillsBounded(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PoolFills = 2 })
	hold := make(chan struct{})
	f.eng.mu.Lock()
	f.eng.createHold = hold
	f.eng.mu.Unlock()
	tg := spec("pooled", gate.DockerSpec{Pool: 6})
	if err := f.b.Prewarm(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	creating := func() int {
		f.eng.mu.Lock()
		defer f.eng.mu.Unlock()
		return f.eng.creating
	}
	for creating() < 2 {
		time.Sleep(time.Millisecond)
	}
	// A live per-user Open gets a creation of its own beside the two fills.
	live := spec("own", gate.DockerSpec{Per: "user"})
	done := make(chan error, 1)
	go func() {
		up, err := f.b.Open(context.Background(), target.Request{Target: live, ID: &gate.Identity{User: "alice"}, ConnID: gate.NewID()})
		if err == nil {
			err = up.Release(context.Background())
		}
		done <- err
	}()
	for creating() < 3 {
		time.Sleep(time.Millisecond)
	}
	close(hold) // every Create may now finish
	if err := <-done; err != nil {
		t.Fatalf("live Open: %v", err)
	}
	f.b.fills.Wait()
	if n := f.b.PoolReady(tg); n != 6 {
		t.Fatalf("PoolReady %d, want 6", n)
	}
	f.eng.mu.Lock()
	peak := f.eng.maxCreating
	f.eng.mu.Unlock()
	if peak != 3 {
		t.Errorf("at most %d creations at once, want 3 (2 fills + 1 live)", peak)
	}
}

func TestPoolRefill(t *testing.T) {
	f := newFixture(t, nil)
	tg := spec("pooled", gate.DockerSpec{Pool: 2})
	if err := f.b.Prewarm(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	f.b.fills.Wait()
	if n := f.b.PoolReady(tg); n != 2 {
		t.Fatalf("PoolReady %d, want 2", n)
	}
	if l := f.eng.lastCreate.Labels; l[LabelPool] != "1" || l[LabelUser] != "" {
		t.Errorf("pool labels %v", l)
	}
	up := f.open(tg, "alice")
	f.b.fills.Wait()
	if n := f.b.PoolReady(tg); n != 2 {
		t.Fatalf("after a take: PoolReady %d, want 2 (refilled)", n)
	}
	if n, execs := f.eng.count(); n != 3 || execs != 1 {
		t.Fatalf("%d containers, %d execs; want 2 ready + 1 taken, 1 agent", n, execs)
	}
	// The taken container is the connection's: removed on Release.
	up.Release(context.Background())
	if n, _ := f.eng.count(); n != 2 {
		t.Fatalf("after Release: %d containers, want the pool's 2", n)
	}
	if !slices.Contains(f.eng.removed, "id01") {
		t.Errorf("the first pool container was not the one taken and removed: removed %v", f.eng.removed)
	}

	// A pool container that died is skipped and removed; the next one serves.
	f.eng.set("id02", func(b *fakeBox) { b.running = false })
	f.open(tg, "bob")
	f.b.fills.Wait()
	if f.eng.has("id02") {
		t.Error("a dead pool container was kept")
	}
	if n := f.b.PoolReady(tg); n != 2 {
		t.Errorf("PoolReady %d after a dead container, want 2", n)
	}

	// An unused pool drains after PoolIdleTTL.
	f.clock.Advance(31 * time.Minute)
	f.b.reapIdle()
	if n := f.b.PoolReady(tg); n != 0 {
		t.Errorf("PoolReady %d after PoolIdleTTL", n)
	}
}

func TestPoolStopsRefillingAfterFailures(t *testing.T) {
	f := newFixture(t, nil)
	f.eng.createErr = Failed("pooled", errors.New("boom"), "the container engine failed")
	tg := spec("pooled", gate.DockerSpec{Pool: 1})
	for range refillFailures {
		if err := f.b.Prewarm(context.Background(), tg); err != nil {
			t.Fatal(err)
		}
		f.b.fills.Wait()
	}
	f.b.refill(&Spec{Key: "pooled|img", Pool: 1})
	f.b.mu.Lock()
	filling := f.b.pools["pooled|img"].filling
	f.b.mu.Unlock()
	if filling != 0 {
		t.Fatalf("refilling after %d failures in a row", refillFailures)
	}
	f.clock.Advance(refillPause + time.Second)
	f.eng.mu.Lock()
	f.eng.createErr = nil
	f.eng.mu.Unlock()
	f.b.refill(&Spec{Key: "pooled|img", Pool: 1})
	f.b.fills.Wait()
	if n := f.b.PoolReady(tg); n != 1 {
		t.Fatalf("PoolReady %d after the pause", n)
	}
}

func TestReapOrphansTakesOnlyThisGatesUntracked(t *testing.T) {
	f := newFixture(t, nil)
	live := f.open(spec("web", gate.DockerSpec{}), "alice")
	_ = live
	f.eng.add("dead1", map[string]string{LabelGate: "gate-a", LabelConn: "c1", LabelUser: "alice"})
	f.eng.add("dead2", map[string]string{LabelGate: "gate-a", LabelPool: "1"})
	f.eng.add("other", map[string]string{LabelGate: "gate-b", LabelConn: "c2"})
	f.eng.add("nolabel", map[string]string{})
	stale := filepath.Join(f.b.cfg.ContainersDir, "stale")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	n, err := f.b.ReapOrphans(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("ReapOrphans = %d, %v; want 2", n, err)
	}
	if f.eng.has("dead1") || f.eng.has("dead2") {
		t.Error("an orphan of this gate was kept")
	}
	if !f.eng.has("other") || !f.eng.has("nolabel") || !f.eng.has("id01") {
		t.Error("a container of another gate, an unlabelled one or a live one was removed")
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale directory kept: %v", err)
	}
	// Not ours to leave to Close either.
	f.eng.Remove(context.Background(), Ref{ID: "other"})
	f.eng.Remove(context.Background(), Ref{ID: "nolabel"})
}

func TestPostMortem(t *testing.T) {
	conn := &box{target: "web-1"}
	keeper := &box{target: "web-1", keeper: true}
	for _, tt := range []struct {
		name string
		bx   *box
		st   State
		err  error
		want string
	}{
		{"removed", conn, State{Gone: true}, nil, "container for web-1 was removed"},
		{"out of memory, still running", conn, State{Running: true, OOM: true, OOMEvents: 1}, nil, "container for web-1 ran out of memory"},
		{"out of memory, killed", keeper, State{OOM: true, ExitCode: 137}, nil, "container for web-1 ran out of memory"},
		{"exited non-zero", conn, State{ExitCode: 2}, nil, "container for web-1 stopped (exit code 2)"},
		{"keeper exited 0", keeper, State{}, nil, "container for web-1 stopped (exit code 0)"},
		{"agent exited 0 with its connection", conn, State{}, nil, ""},
		{"still running", keeper, State{Running: true}, nil, ""},
		{"engine unreachable", conn, State{}, errors.New("dial unix: no such file"), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			line, logMsg := postMortem(tt.bx, tt.st, tt.err)
			if line != tt.want {
				t.Errorf("line %q, want %q", line, tt.want)
			}
			if (line == "") != (logMsg == "") {
				t.Errorf("line %q but log %q", line, logMsg)
			}
		})
	}
}

func TestEndedAsksForOOMSinceTheSessionBegan(t *testing.T) {
	f := newFixture(t, nil)
	up := f.open(spec("oom", gate.DockerSpec{}), "alice")
	var asked time.Time
	f.eng.mu.Lock()
	f.eng.inspectFn = func(b *fakeBox, since time.Time) (State, error) {
		if since.IsZero() {
			return State{Running: false, ExitCode: 137}, nil
		}
		asked = since
		return State{ExitCode: 137, OOM: true, OOMEvents: 1}, nil
	}
	f.eng.mu.Unlock()
	if why := up.Ended(context.Background()); why != "container for oom ran out of memory" {
		t.Fatalf("Ended = %q", why)
	}
	if asked.IsZero() {
		t.Fatal("OOM kills were not asked for")
	}
	if why := up.Ended(context.Background()); why != "container for oom ran out of memory" {
		t.Fatalf("second Ended = %q", why)
	}
}

func TestRootPolicy(t *testing.T) {
	for _, tt := range []struct {
		name      string
		allow     bool
		info      UserInfo
		user      string
		want      string
		wantError string
	}{
		{"image user kept", false, UserInfo{Default: "app"}, "", "app", ""},
		{"root image runs as nobody", false, UserInfo{Default: "root"}, "", "65534:65534", ""},
		{"empty image user runs as nobody", false, UserInfo{}, "", "65534:65534", ""},
		{"root asked for is refused", false, UserInfo{}, "0:0", "", "container for t could not start: running as root is not allowed"},
		{"root allowed", true, UserInfo{Default: "root"}, "", "root", ""},
		{"remapped engine allows root", false, UserInfo{Remapped: true}, "root", "root", ""},
		{"numeric user", false, UserInfo{Default: "root"}, "1000:1000", "1000:1000", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := &Backend{cfg: Config{AllowRoot: tt.allow}}
			got, err := b.resolveUser(&Spec{Target: "t", User: tt.user}, tt.info)
			if tt.wantError != "" {
				var pe *gate.PublicError
				if !errors.As(err, &pe) || pe.Public != tt.wantError {
					t.Fatalf("err %v, want %q", err, tt.wantError)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("user %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestEngineErrorsReachTheUser(t *testing.T) {
	f := newFixture(t, nil)
	f.eng.createErr = Failed("web", errors.New("no such image"), `image "x" not found`)
	_, err := f.b.Open(context.Background(), target.Request{Target: spec("web", gate.DockerSpec{}), ID: &gate.Identity{User: "alice"}})
	var pe *gate.PublicError
	if !errors.As(err, &pe) || pe.Public != `container for web could not start: image "x" not found` {
		t.Fatalf("Open: %v", err)
	}
	_, err = f.b.Open(context.Background(), target.Request{Target: spec("web", gate.DockerSpec{Per: "sometimes"})})
	if !errors.As(err, &pe) || pe.Public != "container for web could not start: the container mode is invalid" {
		t.Fatalf("Open with a bad mode: %v", err)
	}
}

func TestEndedWaitsForTheEngineToSettle(t *testing.T) {
	f := newFixture(t, nil)
	up := f.open(spec("gone", gate.DockerSpec{}), "alice")
	calls := 0
	f.eng.mu.Lock()
	f.eng.inspectFn = func(b *fakeBox, since time.Time) (State, error) {
		calls++
		if calls < 3 {
			return State{Running: true}, nil // the engine lags the removal
		}
		return State{Gone: true}, nil
	}
	f.eng.mu.Unlock()
	if why := up.Ended(context.Background()); why != "container for gone was removed" {
		t.Fatalf("Ended = %q after %d inspections", why, calls)
	}
}

func TestReleaseDoesNotWaitForTheEngine(t *testing.T) {
	f := newFixture(t, nil)
	up := f.open(spec("web", gate.DockerSpec{}), "alice")
	calls := 0
	f.eng.mu.Lock()
	f.eng.inspectFn = func(b *fakeBox, since time.Time) (State, error) {
		calls++
		return State{Running: true}, nil
	}
	f.eng.mu.Unlock()
	if err := up.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.eng.mu.Lock()
	defer f.eng.mu.Unlock()
	if calls != 2 { // the state, then the OOM kills since the session began
		t.Fatalf("%d inspections on Release, want 2", calls)
	}
}

// TestPoolRefillWaits: taking a pool container starts no refill before
// refillDelay (the connection's handshake with its agent goes first), and
// the refill comes after it.
func TestPoolRefillWaits(t *testing.T) {
	f := newFixture(t, nil)
	tg := spec("pooled", gate.DockerSpec{Pool: 2})
	if err := f.b.Prewarm(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	f.b.fills.Wait()
	t0 := time.Now()
	f.open(tg, "alice")
	f.b.mu.Lock()
	p := f.b.pools["pooled|img"]
	ready, filling := len(p.ready), p.filling
	f.b.mu.Unlock()
	if time.Since(t0) < refillDelay/2 && (ready != 1 || filling != 0) {
		t.Fatalf("just after a take: %d ready, %d filling; want 1 and no refill yet", ready, filling)
	}
	f.b.fills.Wait()
	if time.Since(t0) < refillDelay {
		t.Errorf("refilled %s after the take, before refillDelay", time.Since(t0))
	}
	if n := f.b.PoolReady(tg); n != 2 {
		t.Fatalf("after refillDelay: PoolReady %d, want 2", n)
	}
}

// A removal that fails is not forgotten: the reaper retries it, and Close
// tries once more, so the container is not left until the gate's next start.
func TestFailedRemovalRetried(t *testing.T) {
	f := newFixture(t, nil)
	tg := spec("box", gate.DockerSpec{})
	f.eng.mu.Lock()
	f.eng.removeErrs = 1
	f.eng.mu.Unlock()
	if err := f.open(tg, "alice").Release(context.Background()); err == nil {
		t.Fatal("release: no error from a failed removal")
	}
	if n, _ := f.eng.count(); n != 1 {
		t.Fatalf("%d containers after the failed removal, want it still there", n)
	}
	if err := f.b.retryRemovals(maxRemovals); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n, _ := f.eng.count(); n != 0 {
		t.Fatalf("%d containers after the retry", n)
	}

	// Failing twice: the reaper's retry fails too, Close removes it.
	f.eng.mu.Lock()
	f.eng.removeErrs = 2
	f.eng.mu.Unlock()
	f.open(tg, "alice").Release(context.Background())
	if err := f.b.retryRemovals(maxRemovals); err == nil {
		t.Fatal("second retry: no error")
	}
	if err := f.b.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if n, _ := f.eng.count(); n != 0 {
		t.Fatalf("%d containers after Close", n)
	}
}

// Removals run at most maxRemovals at once, however many sessions end.
func TestRemovalsBounded(t *testing.T) {
	f := newFixture(t, nil)
	tg := spec("box", gate.DockerSpec{})
	var ups []*target.Upstream
	for range 3 * maxRemovals {
		ups = append(ups, f.open(tg, "alice"))
	}
	hold := make(chan struct{})
	f.eng.mu.Lock()
	f.eng.removeHold = hold
	f.eng.mu.Unlock()
	done := make(chan struct{})
	for _, u := range ups {
		go func() { u.Release(context.Background()); done <- struct{}{} }()
	}
	time.Sleep(100 * time.Millisecond)
	f.eng.mu.Lock()
	inFlight := f.eng.removing
	f.eng.mu.Unlock()
	close(hold)
	for range ups {
		<-done
	}
	if inFlight != maxRemovals || f.eng.maxRemoving != maxRemovals {
		t.Errorf("removals at once: %d (most %d), want %d", inFlight, f.eng.maxRemoving, maxRemovals)
	}
	if n, _ := f.eng.count(); n != 0 {
		t.Fatalf("%d containers left", n)
	}
}

// A pool fill waits while a connection waits on a container being started
// for it, and goes once that start is done: the refill never competes with
// the users of a burst for the engine.
func TestPoolFillYieldsToLiveStarts(t *testing.T) {
	f := newFixture(t, nil)
	pooled := spec("pooled", gate.DockerSpec{Pool: 1})
	if err := f.b.Prewarm(context.Background(), pooled); err != nil {
		t.Fatal(err)
	}
	f.b.fills.Wait()
	creating := func() int {
		f.eng.mu.Lock()
		defer f.eng.mu.Unlock()
		return f.eng.creating
	}
	hold := make(chan struct{})
	f.eng.mu.Lock()
	f.eng.createHold = hold
	f.eng.mu.Unlock()
	// A cold connection: its Create is held.
	done := make(chan error, 1)
	go func() {
		up, err := f.b.Open(context.Background(), target.Request{Target: spec("cold", gate.DockerSpec{}), ID: &gate.Identity{User: "bob"}, ConnID: gate.NewID()})
		if err == nil {
			err = up.Release(context.Background())
		}
		done <- err
	}()
	for creating() < 1 {
		time.Sleep(time.Millisecond)
	}
	// The pool's one container goes to alice; its refill is due after
	// refillDelay but must wait for bob's start.
	up := f.open(pooled, "alice")
	time.Sleep(refillDelay + 10*fillYieldPoll)
	if n := creating(); n != 1 {
		t.Fatalf("%d creations in flight while a connection waits on its own, want 1 (the pool fill must wait)", n)
	}
	close(hold)
	if err := <-done; err != nil {
		t.Fatalf("cold Open: %v", err)
	}
	f.b.fills.Wait()
	if n := f.b.PoolReady(pooled); n != 1 {
		t.Fatalf("PoolReady %d after the live start ended, want 1", n)
	}
	up.Release(context.Background())
}
