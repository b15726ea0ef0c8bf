package container

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target"
)

// memRegistry is the store's registry semantics in memory (the store's
// own are held by storetest against SQLite and PostgreSQL).
type memRegistry struct {
	mu    sync.Mutex
	rows  map[string]gate.WarmContainer
	gates map[string]time.Time // heartbeats
}

func newMemRegistry() *memRegistry {
	return &memRegistry{rows: map[string]gate.WarmContainer{}, gates: map[string]time.Time{}}
}

func (r *memRegistry) beat(id string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gates[id] = at
}

func (r *memRegistry) row(id string) (gate.WarmContainer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.rows[id]
	return c, ok
}

func (r *memRegistry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rows)
}

func (r *memRegistry) claimable(c gate.WarmContainer, gateID string, alive time.Time) bool {
	hb, ok := r.gates[c.Gate]
	return c.Gate == gateID || c.Gate == "" || !ok || hb.Before(alive)
}

func (r *memRegistry) PutContainer(_ context.Context, c gate.WarmContainer) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.rows {
		if c.Kind == gate.ContainerPerUser && o.Kind == c.Kind && o.Key == c.Key && o.User == c.User {
			return false, nil
		}
	}
	r.rows[c.ID] = c
	return true, nil
}

func (r *memRegistry) ReplaceContainer(_ context.Context, oldID string, c gate.WarmContainer) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.rows[oldID]
	if !ok || o.Gate != c.Gate {
		return false, nil
	}
	delete(r.rows, oldID)
	r.rows[c.ID] = c
	return true, nil
}

func (r *memRegistry) ClaimContainer(_ context.Context, key, user, gateID string, alive time.Time) (gate.WarmContainer, bool, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, c := range r.rows {
		if c.Kind != gate.ContainerPerUser || c.Key != key || c.User != user {
			continue
		}
		if c.Gate != gateID && r.claimable(c, gateID, alive) {
			c.Gate = gateID
			r.rows[id] = c
			return c, true, true, nil
		}
		return c, true, false, nil
	}
	return gate.WarmContainer{}, false, false, nil
}

func (r *memRegistry) TouchContainers(_ context.Context, ids []string, at time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if c, ok := r.rows[id]; ok && c.LastUsed.Before(at) {
			c.LastUsed = at
			r.rows[id] = c
		}
	}
	return nil
}

func (r *memRegistry) ListContainers(context.Context) ([]gate.WarmContainer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []gate.WarmContainer{}
	for _, c := range r.rows {
		out = append(out, c)
	}
	return out, nil
}

func (r *memRegistry) ReleaseContainers(_ context.Context, gateID string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id, c := range r.rows {
		if c.Gate == gateID && c.Kind != gate.ContainerConn {
			c.Gate = ""
			r.rows[id] = c
			n++
		}
	}
	return n, nil
}

func (r *memRegistry) ClaimRemoval(_ context.Context, id, gateID string, alive, idleBefore time.Time) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.rows[id]
	if !ok || !r.claimable(c, gateID, alive) || (c.Kind != gate.ContainerConn && !c.LastUsed.Before(idleBefore)) {
		return false, nil
	}
	delete(r.rows, id)
	return true, nil
}

func (r *memRegistry) RemoveContainer(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.rows, id)
	return nil
}

func (r *memRegistry) ListGates(context.Context) ([]gate.GateInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []gate.GateInfo
	for id, hb := range r.gates {
		out = append(out, gate.GateInfo{ID: id, Heartbeat: hb})
	}
	return out, nil
}

var _ Registry = (*memRegistry)(nil)

// twoGates is two Backends (gate-a, gate-b) on one engine and one
// registry, with the socket transport and separate containers directories.
type twoGates struct {
	a, b  *Backend
	eng   *fakeEngine
	reg   *memRegistry
	clock *fakeClock
}

func newTwoGates(t *testing.T) *twoGates {
	t.Helper()
	dir := t.TempDir()
	agent := filepath.Join(dir, "sshgate-agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := &twoGates{eng: newFakeEngine(), reg: newMemRegistry(), clock: &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	mk := func(id string) *Backend {
		b, err := New(Config{AgentPath: agent, ContainersDir: filepath.Join(dir, id), GateID: id, Transport: TransportSocket,
			Now: w.clock.Now, ReapInterval: time.Hour, Registry: w.reg, HeartbeatExpiry: time.Minute,
			Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("gate", id)}, w.eng)
		if err != nil {
			t.Fatal(err)
		}
		w.reg.beat(id, time.Now())
		return b
	}
	w.a, w.b = mk("gate-a"), mk("gate-b")
	t.Cleanup(func() {
		w.a.Close(context.Background())
		w.b.Close(context.Background())
	})
	return w
}

func (w *twoGates) open(t *testing.T, b *Backend, tg gate.Target, user string) *target.Upstream {
	t.Helper()
	up, err := b.Open(context.Background(), target.Request{Target: tg, ID: &gate.Identity{User: user}, ConnID: gate.NewID()})
	if err != nil {
		t.Fatalf("Open %s for %s on %s: %v", tg.Name, user, b.GateID(), err)
	}
	return up
}

func (w *twoGates) ids(t *testing.T) []string {
	t.Helper()
	l, _ := w.eng.List(context.Background(), map[string]string{})
	var ids []string
	for _, c := range l {
		ids = append(ids, c.ID)
	}
	return ids
}

// Gate B connects to the per-user container gate A started (with a key of
// its own beside A's, A's pinned host key); A keeps it while B serves it
// past the TTL, and removes it once idle on both.
func TestRegistrySharedPerUser(t *testing.T) {
	w := newTwoGates(t)
	tg := spec("dev", gate.DockerSpec{Per: "user", IdleTTL: "1m"})
	upA := w.open(t, w.a, tg, "alice")
	upA.Release(context.Background())
	upB := w.open(t, w.b, tg, "alice")
	ids := w.ids(t)
	if len(ids) != 1 {
		t.Fatalf("containers %v, want A's one", ids)
	}
	row, ok := w.reg.row(ids[0])
	if !ok || row.Gate != "gate-a" || row.Kind != gate.ContainerPerUser || row.HostKey == "" {
		t.Fatalf("registry row: %+v %v", row, ok)
	}
	keys, _ := filepath.Glob(filepath.Join(row.Dir, "k-*.keys"))
	if len(keys) != 1 {
		t.Fatalf("B's key files in A's directory: %v", keys)
	}
	// B's connection pins A's agent host key.
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(row.HostKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := upB.Client.HostKeyCallback("agent", nil, pub); err != nil {
		t.Fatalf("B refuses A's agent host key: %v", err)
	}
	other, _ := newKeys()
	if err := upB.Client.HostKeyCallback("agent", nil, other.hostPub); err == nil {
		t.Fatal("B accepts another host key")
	}

	// Past the TTL with B's connection open: A asks, the registry keeps it.
	w.clock.Advance(2 * time.Minute)
	w.b.reapIdle() // B tells the registry it serves it
	w.a.reapIdle()
	if !w.eng.has(ids[0]) {
		t.Fatal("A removed the container B serves")
	}
	upB.Release(context.Background())
	w.b.reapIdle() // B's last touch; it forgets the container and its key file
	if keys, _ := filepath.Glob(filepath.Join(row.Dir, "k-*.keys")); len(keys) != 0 {
		t.Fatalf("B's key file left: %v", keys)
	}
	w.clock.Advance(30 * time.Second)
	w.a.reapIdle()
	if !w.eng.has(ids[0]) {
		t.Fatal("A removed the container before a TTL after B's last use")
	}
	w.clock.Advance(31 * time.Second)
	w.a.reapIdle()
	if w.eng.has(ids[0]) || w.reg.len() != 0 {
		t.Fatalf("idle on both gates past its TTL: container kept %v, rows %d", w.eng.has(ids[0]), w.reg.len())
	}
}

// A gate that closes while another is alive hands its idle per-user
// containers over; the other adopts one on the next connection and reaps
// it after its TTL. The last gate removes its containers, as a single gate.
func TestRegistryHandOver(t *testing.T) {
	w := newTwoGates(t)
	tg := spec("dev", gate.DockerSpec{Per: "user", IdleTTL: "1m"})
	w.open(t, w.a, tg, "alice").Release(context.Background())
	w.open(t, w.a, spec("conn", gate.DockerSpec{}), "alice").Release(context.Background()) // per connection: gone at once
	if err := w.a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := w.ids(t)
	if len(ids) != 1 {
		t.Fatalf("after A closed: containers %v, want the per-user one", ids)
	}
	if row, _ := w.reg.row(ids[0]); row.Gate != "" {
		t.Fatalf("handed over row still owned by %q", row.Gate)
	}
	up := w.open(t, w.b, tg, "alice")
	if row, _ := w.reg.row(ids[0]); row.Gate != "gate-b" || len(w.ids(t)) != 1 {
		t.Fatalf("B did not adopt it: %+v, containers %v", row, w.ids(t))
	}
	up.Release(context.Background())
	w.clock.Advance(2 * time.Minute)
	w.b.reapIdle()
	if len(w.ids(t)) != 0 || w.reg.len() != 0 {
		t.Fatalf("B did not reap the adopted container: %v, rows %d", w.ids(t), w.reg.len())
	}
	// The last gate: nothing to hand over to.
	w.open(t, w.b, tg, "bob").Release(context.Background())
	w.reg.beat("gate-a", time.Now().Add(-time.Hour))
	if err := w.b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(w.ids(t)) != 0 || w.reg.len() != 0 {
		t.Fatalf("the last gate left containers %v, rows %d", w.ids(t), w.reg.len())
	}
}

// A dead gate's containers are reaped by the living one: a per-connection
// one at once, a per-user one after its TTL; a live gate's are left alone.
func TestRegistryDeadGateSwept(t *testing.T) {
	w := newTwoGates(t)
	upConn := w.open(t, w.a, spec("conn", gate.DockerSpec{}), "alice")
	upUser := w.open(t, w.a, spec("dev", gate.DockerSpec{Per: "user", IdleTTL: "1m"}), "alice")
	defer upConn.Release(context.Background())
	defer upUser.Release(context.Background())
	w.b.reapIdle()
	if n := len(w.ids(t)); n != 2 {
		t.Fatalf("B swept a live gate's containers: %d left", n)
	}
	w.reg.beat("gate-a", time.Now().Add(-time.Hour)) // A's heartbeat expired
	w.b.reapIdle()
	if n := len(w.ids(t)); n != 1 {
		t.Fatalf("after A died: %d containers, want the per-user one until its TTL", n)
	}
	w.clock.Advance(2 * time.Minute)
	w.b.reapIdle()
	if n := len(w.ids(t)); n != 0 || w.reg.len() != 0 {
		t.Fatalf("after the TTL: %d containers, %d rows", n, w.reg.len())
	}
}

// On start, a gate's own per-user containers that the registry records
// stay (another gate may serve them), with their directories; the rest go.
func TestReapOrphansKeepsRegistryPerUser(t *testing.T) {
	w := newTwoGates(t)
	w.open(t, w.a, spec("dev", gate.DockerSpec{Per: "user", IdleTTL: "1m"}), "alice").Release(context.Background())
	ids := w.ids(t)
	row, _ := w.reg.row(ids[0])
	// gate-a again after a crash: a fresh Backend with the same id and directory.
	w.eng.add("stray", map[string]string{LabelGate: "gate-a"})
	a2, err := New(Config{AgentPath: w.a.AgentPath(), ContainersDir: filepath.Dir(row.Dir), GateID: "gate-a", Transport: TransportSocket,
		Now: w.clock.Now, ReapInterval: time.Hour, Registry: w.reg}, w.eng)
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close(context.Background())
	n, err := a2.ReapOrphans(context.Background())
	if err != nil || n != 1 || w.eng.has("stray") || !w.eng.has(ids[0]) {
		t.Fatalf("reap orphans: %d %v; stray kept %v, per-user kept %v", n, err, w.eng.has("stray"), w.eng.has(ids[0]))
	}
	if _, err := os.Stat(filepath.Join(row.Dir, hostKeyFile)); err != nil {
		t.Fatalf("the per-user container's directory went: %v", err)
	}
}

// A live gate's placeholder (it is starting the user's container) makes
// another gate wait rather than start a second; a dead gate's is dropped
// and the container started.
func TestRegistryWaitsForAnotherGatesStart(t *testing.T) {
	w := newTwoGates(t)
	tg := spec("dev", gate.DockerSpec{Per: "user", IdleTTL: "1m"})
	s, err := w.eng.Prepare(tg)
	if err != nil {
		t.Fatal(err)
	}
	w.reg.PutContainer(context.Background(), gate.WarmContainer{ID: pendingPrefix + "x", Key: s.Key, User: "alice",
		Kind: gate.ContainerPerUser, Gate: "gate-a", Created: w.clock.Now(), LastUsed: w.clock.Now()})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := w.b.Open(ctx, target.Request{Target: tg, ID: &gate.Identity{User: "alice"}, ConnID: gate.NewID()}); err == nil {
		t.Fatal("B opened while A is starting the container")
	}
	if ids := w.ids(t); len(ids) != 0 {
		t.Fatalf("B started a second container: %v", ids)
	}
	w.reg.beat("gate-a", time.Now().Add(-time.Hour))
	up := w.open(t, w.b, tg, "alice")
	defer up.Release(context.Background())
	ids := w.ids(t)
	if len(ids) != 1 || w.reg.len() != 1 {
		t.Fatalf("after A died: containers %v, rows %d", ids, w.reg.len())
	}
	if row, _ := w.reg.row(ids[0]); row.Gate != "gate-b" || row.Dir == "" {
		t.Fatalf("row: %+v", row)
	}
}
