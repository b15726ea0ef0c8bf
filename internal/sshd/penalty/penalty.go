// Package penalty defends the front door against brute force and floods, in
// the spirit of OpenSSH's PerSourcePenalties: how a connection ends before
// authentication (failed authentication, disconnect without trying, login
// grace exceeded, refused over a limit) earns its source (IPv4 /32, IPv6 /64)
// penalty time. Penalty time drains in real time; when what is left reaches a
// threshold the source is banned, for a time that doubles with each ban it
// earns again while the previous one is remembered, up to a maximum. Bans live
// in the store, so several gates and the admin CLI see (and lift) the same
// ones; a gate reads them back every Refresh.
//
// It also throttles per account: password failures from any number of
// sources (password spraying) lock that account's password authentication for
// a while (its keys keep working), and wrong TOTP codes lock the second factor.
// When the store keeps failure counters (Accounts), they live there, so every
// gate sharing it counts together and a restart forgets nothing; a store
// that cannot answer counts as locked (fail closed), with the error returned.
//
// Allowlisted prefixes are never penalised. It imports store only.
//
// Must not import: sshd store/... auth/... target/... relay broker policy app
package penalty

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

// Event is how a connection's pre-authentication phase ended.
type Event int

const (
	AuthOK        Event = iota // authenticated: no penalty
	AuthFail                   // tried to authenticate, failed, and left (or was cut off)
	NoAuth                     // left before trying to authenticate
	GraceExceeded              // did not finish within the login grace time
	Refused                    // refused at accept: over a limit on unauthenticated connections
)

func (e Event) String() string {
	switch e {
	case AuthOK:
		return "authok"
	case AuthFail:
		return "authfail"
	case NoAuth:
		return "noauth"
	case GraceExceeded:
		return "grace-exceeded"
	case Refused:
		return "refused"
	}
	return "unknown"
}

// Config tunes the penalties. Durations of zero mean no penalty for that event.
type Config struct {
	Enabled       bool
	AuthFail      time.Duration
	NoAuth        time.Duration
	GraceExceeded time.Duration
	Refused       time.Duration
	Threshold     time.Duration // penalty time left that turns into a ban
	Ban           time.Duration // the first ban; each repeat doubles it
	MaxBan        time.Duration
	Memory        time.Duration // how long after a ban ends a new one still counts as a repeat
	Allow         []netip.Prefix
	Refresh       time.Duration // how often the gate reads bans back from the store

	PasswordFailures int           // password failures per account within PasswordWindow ...
	PasswordWindow   time.Duration //
	PasswordLock     time.Duration // ... lock its password authentication this long; 0 failures = off
	CodeFailures     int           // wrong TOTP codes per account within CodeWindow ...
	CodeWindow       time.Duration
	CodeLock         time.Duration // ... lock its second factor this long
}

// Bans is the part of the store the guard uses.
type Bans interface {
	PutBan(ctx context.Context, b gate.Ban) error
	ListBans(ctx context.Context) ([]gate.Ban, error)
	PruneBans(ctx context.Context, before time.Time) (int, error)
}

// Accounts keeps per-account failure counters (the store's
// CountFailure/FailureLockedUntil): one atomic statement per failure.
type Accounts interface {
	CountFailure(ctx context.Context, kind, user string, at time.Time, limit int, window, lock time.Duration) (lockedUntil time.Time, locked bool, err error)
	FailureLockedUntil(ctx context.Context, kind, user string) (time.Time, error)
}

// Failure counter kinds, as the store names them.
const (
	kindPassword = "password"
	kindCode     = "code"
)

// maxSources bounds the sources tracked with penalty time left.
const maxSources = 100_000

// Guard keeps the penalty state of one gate.
type Guard struct {
	cfg   Config
	bans  Bans
	accts Accounts // nil: counters in memory
	log   *slog.Logger
	now   func() time.Time

	mu    sync.Mutex
	score map[netip.Prefix]time.Time // penalty runs out at
	known map[netip.Prefix]gate.Ban  // bans as last read from (or written to) the store
	// A refresh keeps a ban this guard made whose write to the store may be
	// missing from what the refresh read: one still being written
	// (writing), or one whose write finished after the read began (made
	// holds the value of the counter writes when it finished).
	writes   uint64
	made     map[netip.Prefix]uint64
	writing  map[netip.Prefix]bool
	accounts map[string]*counter // password failures
	codes    map[string]*counter // wrong TOTP codes
}

type counter struct {
	start  time.Time // window start
	n      int
	locked time.Time // locked until
}

// New returns a guard; bans may be nil (bans then live in memory only).
// When bans also implements Accounts (the store does), per-account failure
// counters live there too.
func New(cfg Config, bans Bans, log *slog.Logger) *Guard {
	accts, _ := bans.(Accounts)
	return &Guard{cfg: cfg, bans: bans, accts: accts, log: log, now: time.Now,
		score: map[netip.Prefix]time.Time{}, known: map[netip.Prefix]gate.Ban{}, made: map[netip.Prefix]uint64{},
		writing:  map[netip.Prefix]bool{},
		accounts: map[string]*counter{}, codes: map[string]*counter{}}
}

// SetClock replaces the clock (tests).
func (g *Guard) SetClock(now func() time.Time) { g.now = now }

// Source is the prefix penalties apply to: the address itself for IPv4, its
// /64 for IPv6. The zero Prefix for addresses that do not parse.
func Source(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if !a.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// AddrOf reads the IP address of a net.Addr (TCP, or anything printing host:port).
func AddrOf(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ParseSource reads an address or prefix as typed by an operator ("192.0.2.7",
// "2001:db8::1", "2001:db8::/64") into the source it belongs to.
func ParseSource(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return Source(a), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address", s)
	}
	if src := Source(p.Addr()); src.Bits() == p.Bits() {
		return src, nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address or an IPv6 /64", s)
}

func (g *Guard) allowlisted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range g.cfg.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Allowed reports whether a connection from a may proceed; false means close
// it at once. It takes no I/O: bans come from the cache Refresh keeps.
func (g *Guard) Allowed(a netip.Addr) bool {
	if g == nil || !g.cfg.Enabled || g.allowlisted(a) {
		return true
	}
	src := Source(a)
	g.mu.Lock()
	defer g.mu.Unlock()
	b, ok := g.known[src]
	return !ok || !g.now().Before(b.Until)
}

func (g *Guard) cost(e Event) time.Duration {
	switch e {
	case AuthFail:
		return g.cfg.AuthFail
	case NoAuth:
		return g.cfg.NoAuth
	case GraceExceeded:
		return g.cfg.GraceExceeded
	case Refused:
		return g.cfg.Refused
	}
	return 0
}

// Observe charges the source of a for how its connection ended. When that
// turns into a ban, the ban is written to the store before Observe returns.
func (g *Guard) Observe(a netip.Addr, e Event) {
	if g == nil || !g.cfg.Enabled || g.allowlisted(a) {
		return
	}
	p := g.cost(e)
	src := Source(a)
	if p <= 0 || !src.IsValid() {
		return
	}
	now := g.now()
	g.mu.Lock()
	until := g.score[src]
	if until.Before(now) {
		until = now
	}
	until = until.Add(p)
	if until.Sub(now) < g.cfg.Threshold {
		if len(g.score) >= maxSources {
			g.sweepLocked(now)
		}
		if len(g.score) < maxSources {
			g.score[src] = until
		}
		g.mu.Unlock()
		return
	}
	delete(g.score, src)
	prev, had := g.known[src]
	if had && now.Before(prev.Until) {
		g.mu.Unlock() // already banned (another gate, or a race): nothing to add
		return
	}
	count := 1
	if had && now.Before(prev.Until.Add(g.cfg.Memory)) {
		count = prev.Count + 1
	}
	b := gate.Ban{Source: src.String(), Until: now.Add(g.banFor(count)), Reason: e.String(), Count: count, CreatedAt: now}
	g.known[src] = b
	g.writing[src] = true
	g.mu.Unlock()
	g.log.Warn("source banned", "source", b.Source, "reason", b.Reason, "for", b.Until.Sub(now).String(), "count", count)
	if g.bans != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.bans.PutBan(ctx, b); err != nil {
			g.log.Error("record ban", "source", b.Source, "err", err)
		}
	}
	g.mu.Lock()
	delete(g.writing, src)
	g.writes++
	g.made[src] = g.writes
	g.mu.Unlock()
}

// banFor is the length of the count-th ban in a row.
func (g *Guard) banFor(count int) time.Duration {
	d := g.cfg.Ban
	for i := 1; i < count && d < g.cfg.MaxBan; i++ {
		d *= 2
	}
	return min(d, g.cfg.MaxBan)
}

func (g *Guard) sweepLocked(now time.Time) {
	for src, until := range g.score {
		if !until.After(now) {
			delete(g.score, src)
		}
	}
}

// Refresh reads the bans back from the store: bans other gates made appear,
// lifted ones disappear (and the source's penalty time is forgotten), and
// bans whose memory has run out are pruned.
func (g *Guard) Refresh(ctx context.Context) error {
	if g == nil || g.bans == nil {
		return nil
	}
	now := g.now()
	g.mu.Lock()
	readFrom := g.writes
	g.mu.Unlock()
	list, err := g.bans.ListBans(ctx)
	if err != nil {
		return err
	}
	// Pruning writes: only when there is something to prune.
	forgotten := now.Add(-g.cfg.Memory)
	for _, b := range list {
		if b.Until.Before(forgotten) {
			if _, err := g.bans.PruneBans(ctx, forgotten); err != nil {
				return err
			}
			break
		}
	}
	known := make(map[netip.Prefix]gate.Ban, len(list))
	for _, b := range list {
		p, err := netip.ParsePrefix(b.Source)
		if err != nil || b.Until.Before(forgotten) {
			continue
		}
		known[p] = b
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for p, b := range g.known {
		if g.writing[p] || g.made[p] > readFrom {
			known[p] = b // written during (or after) the read: maybe not in it yet, not lifted
			continue
		}
		delete(g.made, p)
		if _, ok := known[p]; !ok {
			delete(g.score, p) // lifted
		}
	}
	g.known = known
	g.sweepLocked(now)
	return nil
}

// Run refreshes every cfg.Refresh until ctx is done.
func (g *Guard) Run(ctx context.Context) {
	if g == nil || !g.cfg.Enabled || g.bans == nil {
		return
	}
	if err := g.Refresh(ctx); err != nil && !errors.Is(err, context.Canceled) {
		g.log.Warn("read bans", "err", err)
	}
	t := time.NewTicker(g.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := g.Refresh(ctx); err != nil && ctx.Err() == nil {
				g.log.Warn("read bans", "err", err)
			}
		}
	}
}

// ---- per-account throttling ----

// Account throttling works whether or not source penalties are enabled.
func (g *Guard) locked(kind string, m map[string]*counter, user string) (bool, error) {
	if g == nil {
		return false, nil
	}
	if g.accts != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		until, err := g.accts.FailureLockedUntil(ctx, kind, user)
		if err != nil {
			return true, fmt.Errorf("read %s lock: %w", kind, err) // fail closed
		}
		return g.now().Before(until), nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := m[user]
	return ok && g.now().Before(c.locked), nil
}

// fail counts a failure and reports whether it locked the account.
func (g *Guard) fail(kind string, m map[string]*counter, user string, max int, window, lock time.Duration) bool {
	if g == nil || max <= 0 {
		return false
	}
	now := g.now()
	if g.accts != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, locked, err := g.accts.CountFailure(ctx, kind, user, now, max, window, lock)
		if err != nil {
			g.log.Error("count failure", "kind", kind, "user", user, "err", err)
		}
		return locked
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := m[user]
	if !ok || now.Sub(c.start) >= window {
		if len(m) >= maxSources {
			for u, c := range m {
				if now.Sub(c.start) >= window && !now.Before(c.locked) {
					delete(m, u)
				}
			}
		}
		c = &counter{start: now, locked: c.lockedOrZero()}
		m[user] = c
	}
	c.n++
	if c.n >= max && !now.Before(c.locked) {
		c.locked = now.Add(lock)
		c.start, c.n = now, 0
		return true
	}
	return false
}

func (c *counter) lockedOrZero() time.Time {
	if c == nil {
		return time.Time{}
	}
	return c.locked
}

// PasswordLocked reports whether user's password authentication is locked;
// an error (the store did not answer) comes with true.
func (g *Guard) PasswordLocked(user string) (bool, error) {
	return g.locked(kindPassword, g.accounts, user)
}

// PasswordFailed counts a wrong password for user, from any source.
func (g *Guard) PasswordFailed(user string) {
	if g.fail(kindPassword, g.accounts, user, g.cfg.PasswordFailures, g.cfg.PasswordWindow, g.cfg.PasswordLock) {
		g.log.Warn("password authentication locked", "user", user, "for", g.cfg.PasswordLock.String())
	}
}

// CodeLocked reports whether user's second factor is locked after wrong
// codes; an error (the store did not answer) comes with true.
func (g *Guard) CodeLocked(user string) (bool, error) { return g.locked(kindCode, g.codes, user) }

// CodeFailed counts a wrong TOTP code for user.
func (g *Guard) CodeFailed(user string) {
	if g.fail(kindCode, g.codes, user, g.cfg.CodeFailures, g.cfg.CodeWindow, g.cfg.CodeLock) {
		g.log.Warn("second factor locked after wrong codes", "user", user, "for", g.cfg.CodeLock.String())
	}
}
