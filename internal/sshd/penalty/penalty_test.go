package penalty

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

type fakeBans struct {
	mu   sync.Mutex
	bans map[string]gate.Ban
}

func (f *fakeBans) PutBan(_ context.Context, b gate.Ban) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bans[b.Source] = b
	return nil
}

func (f *fakeBans) ListBans(context.Context) ([]gate.Ban, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []gate.Ban
	for _, b := range f.bans {
		out = append(out, b)
	}
	return out, nil
}

func (f *fakeBans) PruneBans(_ context.Context, before time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k, b := range f.bans {
		if b.Until.Before(before) {
			delete(f.bans, k)
			n++
		}
	}
	return n, nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func testConfig() Config {
	return Config{Enabled: true, AuthFail: 5 * time.Second, NoAuth: time.Second, GraceExceeded: 10 * time.Second,
		Refused: 2 * time.Second, Threshold: 30 * time.Second, Ban: time.Minute, MaxBan: 5 * time.Minute,
		Memory: time.Hour, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Refresh: time.Second,
		PasswordFailures: 3, PasswordWindow: time.Minute, PasswordLock: 10 * time.Minute,
		CodeFailures: 2, CodeWindow: time.Minute, CodeLock: 5 * time.Minute}
}

func newGuard(cfg Config) (*Guard, *clock, *fakeBans) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	fb := &fakeBans{bans: map[string]gate.Ban{}}
	g := New(cfg, fb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	g.SetClock(c.now)
	return g, c, fb
}

var (
	attacker = netip.MustParseAddr("192.0.2.7")
	other    = netip.MustParseAddr("192.0.2.8")
)

func TestBanAfterThreshold(t *testing.T) {
	g, c, fb := newGuard(testConfig())
	for i := 0; i < 5; i++ { // 25s of penalty: under the threshold
		g.Observe(attacker, AuthFail)
		if !g.Allowed(attacker) {
			t.Fatalf("banned after %d failures", i+1)
		}
	}
	g.Observe(attacker, AuthOK) // success costs nothing and forgives nothing
	g.Observe(attacker, AuthFail)
	if g.Allowed(attacker) {
		t.Fatal("not banned after 30s of penalty")
	}
	if !g.Allowed(other) {
		t.Fatal("another source banned too")
	}
	b, ok := fb.bans["192.0.2.7/32"]
	if !ok || b.Count != 1 || b.Reason != "authfail" || !b.Until.Equal(c.t.Add(time.Minute)) {
		t.Fatalf("stored ban = %+v (%v)", b, ok)
	}
	c.advance(time.Minute - time.Second)
	if g.Allowed(attacker) {
		t.Fatal("ban ended early")
	}
	c.advance(time.Second)
	if !g.Allowed(attacker) {
		t.Fatal("ban did not end")
	}
}

func TestPenaltyDrains(t *testing.T) {
	g, c, _ := newGuard(testConfig())
	for i := 0; i < 20; i++ { // one failure every 6s drains faster than it fills
		g.Observe(attacker, AuthFail)
		c.advance(6 * time.Second)
		if !g.Allowed(attacker) {
			t.Fatalf("banned at failure %d though penalty drains", i+1)
		}
	}
}

func TestBanGrowsWithRepetition(t *testing.T) {
	g, c, fb := newGuard(testConfig())
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		for g.Allowed(attacker) {
			g.Observe(attacker, GraceExceeded)
		}
		b := fb.bans["192.0.2.7/32"]
		if b.Count != i+1 || b.Until.Sub(c.t) != w {
			t.Fatalf("ban %d: count %d for %s, want %d for %s", i+1, b.Count, b.Until.Sub(c.t), i+1, w)
		}
		c.advance(w)
	}
	// After the memory has passed, the count starts again.
	c.advance(time.Hour)
	for g.Allowed(attacker) {
		g.Observe(attacker, GraceExceeded)
	}
	if b := fb.bans["192.0.2.7/32"]; b.Count != 1 || b.Until.Sub(c.t) != time.Minute {
		t.Fatalf("after memory: %+v", b)
	}
}

func TestAllowlistAndDisabled(t *testing.T) {
	g, _, fb := newGuard(testConfig())
	a := netip.MustParseAddr("10.1.2.3")
	for i := 0; i < 100; i++ {
		g.Observe(a, Refused)
	}
	if !g.Allowed(a) || len(fb.bans) != 0 {
		t.Fatal("allowlisted source banned")
	}
	cfg := testConfig()
	cfg.Enabled = false
	g, _, fb = newGuard(cfg)
	for i := 0; i < 100; i++ {
		g.Observe(attacker, AuthFail)
	}
	if !g.Allowed(attacker) || len(fb.bans) != 0 {
		t.Fatal("disabled guard banned")
	}
}

func TestIPv6PerSlash64(t *testing.T) {
	g, _, fb := newGuard(testConfig())
	for i := 0; g.Allowed(netip.MustParseAddr("2001:db8::1")); i++ {
		// each failure from another address of the same /64
		g.Observe(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)}), AuthFail)
	}
	if _, ok := fb.bans["2001:db8::/64"]; !ok {
		t.Fatalf("bans = %v", fb.bans)
	}
	if !g.Allowed(netip.MustParseAddr("2001:db8:0:1::1")) {
		t.Fatal("neighbouring /64 banned")
	}
}

func TestRefreshSeesOtherGatesAndLifts(t *testing.T) {
	g, c, fb := newGuard(testConfig())
	// Another gate (or the CLI) wrote a ban.
	_ = fb.PutBan(context.Background(), gate.Ban{Source: "192.0.2.8/32", Until: c.t.Add(time.Minute), Count: 1})
	if !g.Allowed(other) {
		t.Fatal("ban seen before refresh")
	}
	if err := g.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if g.Allowed(other) {
		t.Fatal("ban from the store not applied")
	}
	// A lift (bans lift) removes the row; the next refresh lets the source in
	// and forgets its penalty time.
	for g.Allowed(attacker) {
		g.Observe(attacker, AuthFail)
	}
	fb.mu.Lock()
	delete(fb.bans, "192.0.2.8/32")
	delete(fb.bans, "192.0.2.7/32")
	fb.mu.Unlock()
	if err := g.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !g.Allowed(other) || !g.Allowed(attacker) {
		t.Fatal("lifted bans still applied")
	}
	g.Observe(attacker, AuthFail)
	if !g.Allowed(attacker) {
		t.Fatal("one failure after a lift banned again")
	}
	// Bans past their memory are pruned.
	c.advance(2 * time.Hour)
	if err := g.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(fb.bans) != 0 {
		t.Fatalf("not pruned: %v", fb.bans)
	}
}

// locked drops the error of a memory-only guard (always nil).
func locked(b bool, _ error) bool { return b }

func TestPasswordSpraying(t *testing.T) {
	g, c, _ := newGuard(testConfig())
	// Failures from many sources count against the one account.
	for i := 0; i < 3; i++ {
		if locked(g.PasswordLocked("alice")) {
			t.Fatalf("locked after %d", i)
		}
		g.PasswordFailed("alice")
	}
	if !locked(g.PasswordLocked("alice")) {
		t.Fatal("not locked after 3 failures")
	}
	if locked(g.PasswordLocked("bob")) {
		t.Fatal("another account locked")
	}
	c.advance(10 * time.Minute)
	if locked(g.PasswordLocked("alice")) {
		t.Fatal("lock did not end")
	}
	// Failures spread wider than the window never lock.
	for i := 0; i < 10; i++ {
		g.PasswordFailed("carol")
		c.advance(31 * time.Second)
	}
	if locked(g.PasswordLocked("carol")) {
		t.Fatal("locked by failures spread over time")
	}
}

func TestCodeThrottle(t *testing.T) {
	g, c, _ := newGuard(testConfig())
	g.CodeFailed("alice")
	if locked(g.CodeLocked("alice")) {
		t.Fatal("locked after one wrong code")
	}
	g.CodeFailed("alice")
	if !locked(g.CodeLocked("alice")) {
		t.Fatal("not locked after two wrong codes")
	}
	c.advance(5 * time.Minute)
	if locked(g.CodeLocked("alice")) {
		t.Fatal("lock did not end")
	}
}

func TestParseSource(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"192.0.2.7/32", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8::1", "2001:db8::/64"},
		{"2001:db8::/64", "2001:db8::/64"},
		{"2001:db8::/48", ""},
		{"10.0.0.0/8", ""},
		{"nope", ""},
		{"", ""},
	} {
		p, err := ParseSource(c.in)
		got := ""
		if err == nil {
			got = p.String()
		}
		if got != c.want {
			t.Errorf("ParseSource(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func FuzzParseSource(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "2001:db8::/64", "::ffff:1.2.3.4/128", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSource(s)
		if err != nil {
			return
		}
		if q := Source(p.Addr()); q != p {
			t.Fatalf("ParseSource(%q) = %v, not a source prefix (%v)", s, p, q)
		}
	})
}

// slowList is a store whose ListBans returns what it held when the read
// began, after the caller has made a ban meanwhile.
type slowList struct {
	*fakeBans
	during func()
}

func (s *slowList) ListBans(ctx context.Context) ([]gate.Ban, error) {
	list, err := s.fakeBans.ListBans(ctx)
	if s.during != nil {
		s.during()
		s.during = nil
	}
	return list, err
}

// A ban made while a refresh reads the store is not dropped by that refresh
// (the read began before the ban was written).
func TestRefreshKeepsABanMadeDuringTheRead(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := &slowList{fakeBans: &fakeBans{bans: map[string]gate.Ban{}}}
	g := New(testConfig(), st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	g.SetClock(c.now)
	st.during = func() {
		for g.Allowed(attacker) {
			g.Observe(attacker, AuthFail)
		}
	}
	if err := g.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if g.Allowed(attacker) {
		t.Fatal("the refresh dropped a ban made while it read the store")
	}
	// The next refresh reads it back from the store and keeps it.
	if err := g.Refresh(context.Background()); err != nil || g.Allowed(attacker) {
		t.Fatalf("ban lost on the next refresh: %v", err)
	}
	// And a lift still lifts it.
	st.mu.Lock()
	delete(st.bans, "192.0.2.7/32")
	st.mu.Unlock()
	if err := g.Refresh(context.Background()); err != nil || !g.Allowed(attacker) {
		t.Fatalf("lifted ban still applied: %v", err)
	}
}

// slowPut is a store whose PutBan lets a refresh run before the ban is
// stored, as a slow store does.
type slowPut struct {
	*fakeBans
	g    *Guard
	puts int
}

func (s *slowPut) PutBan(ctx context.Context, b gate.Ban) error {
	s.puts++
	if err := s.g.Refresh(ctx); err != nil {
		return err
	}
	return s.fakeBans.PutBan(ctx, b)
}

// A refresh that runs while the ban is still being written keeps it.
func TestRefreshKeepsABanStillBeingWritten(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := &slowPut{fakeBans: &fakeBans{bans: map[string]gate.Ban{}}}
	g := New(testConfig(), st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	st.g = g
	g.SetClock(c.now)
	for st.puts == 0 { // up to the first ban
		g.Observe(attacker, AuthFail)
	}
	if g.Allowed(attacker) {
		t.Fatal("a refresh during the ban's write dropped it")
	}
	if err := g.Refresh(context.Background()); err != nil || g.Allowed(attacker) {
		t.Fatalf("ban lost once written: %v", err)
	}
}

// storeBans is a store (SQLite, real) seen through the guard's interfaces.
type storeBans struct {
	*sqlite.Store
	fail bool
}

func (s *storeBans) FailureLockedUntil(ctx context.Context, kind, user string) (time.Time, error) {
	if s.fail {
		return time.Time{}, errors.New("database is down")
	}
	return s.Store.FailureLockedUntil(ctx, kind, user)
}

// Two gates on one store count one account's failures together, a new
// guard (a restarted gate) remembers the lock, and a store that does not
// answer counts as locked, with the error.
func TestAccountCountersShared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sshgate.db")
	openGuard := func(c *clock) (*Guard, *storeBans) {
		st, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		sb := &storeBans{Store: st}
		g := New(testConfig(), sb, slog.New(slog.NewTextHandler(io.Discard, nil)))
		g.SetClock(c.now)
		return g, sb
	}
	c := &clock{t: time.Now()}
	a, _ := openGuard(c)
	b, sb := openGuard(c)
	a.PasswordFailed("alice")
	b.PasswordFailed("alice")
	if locked(a.PasswordLocked("alice")) || locked(b.PasswordLocked("alice")) {
		t.Fatal("locked after 2 of 3 failures")
	}
	a.PasswordFailed("alice")
	if !locked(b.PasswordLocked("alice")) {
		t.Fatal("gate B does not see the lock failures through A and B reached")
	}
	a.CodeFailed("bob")
	b.CodeFailed("bob")
	restarted, _ := openGuard(c)
	if !locked(restarted.CodeLocked("bob")) || !locked(restarted.PasswordLocked("alice")) {
		t.Fatal("a restarted gate forgot the locks")
	}
	c.advance(10 * time.Minute)
	if locked(restarted.PasswordLocked("alice")) {
		t.Fatal("lock did not end")
	}
	sb.fail = true
	if l, err := b.CodeLocked("carol"); !l || err == nil {
		t.Fatalf("store down: locked %v, err %v; want locked with an error", l, err)
	}
}
