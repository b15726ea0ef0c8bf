package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target"
)

// fakeEngine keeps containers in memory. Its exec streams are pipes whose
// far end is drained and closed when the container is removed. It is a
// stand-in for the pure logic of the lifecycle only: the engines themselves
// are tested against the real thing.
type fakeEngine struct {
	mu          sync.Mutex
	n           int
	boxes       map[string]*fakeBox
	removed     []string
	execs       int
	createErr   error
	removeErrs  int // the next removeErrs Removes fail (the container stays)
	removing    int // Removes in flight; maxRemoving the most at once
	maxRemoving int
	removeHold  chan struct{} // if set, every Remove receives from it first
	userInfo    UserInfo
	inspectFn   func(b *fakeBox, since time.Time) (State, error) // nil: from the box
	lastCreate  CreateRequest
	// createHold, if set, is received from by every Create before it
	// returns; creating/maxCreating count the Creates in flight.
	createHold  chan struct{}
	creating    int
	maxCreating int
}

type fakeBox struct {
	ref     Ref
	req     CreateRequest
	labels  map[string]string
	running bool
	gone    bool
	peers   []net.Conn
}

func newFakeEngine() *fakeEngine { return &fakeEngine{boxes: map[string]*fakeBox{}} }

func (f *fakeEngine) Prepare(t gate.Target) (*Spec, error) {
	if t.Docker == nil {
		return nil, gate.Errorf(errors.New("no spec"), "target %s is not a container target", t.Name)
	}
	perUser, ttl, err := ParseMode(t.Name, t.Docker.Per, t.Docker.IdleTTL)
	if err != nil {
		return nil, err
	}
	return &Spec{Target: t.Name, Key: t.Name + "|" + t.Docker.Image, User: t.Docker.User, Cmd: t.Docker.Cmd, Env: t.Docker.Env,
		PerUser: perUser, IdleTTL: ttl, Pool: t.Docker.Pool}, nil
}

func (f *fakeEngine) User(context.Context, *Spec) (UserInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.userInfo, nil
}

func (f *fakeEngine) Create(ctx context.Context, req CreateRequest) (Ref, error) {
	f.mu.Lock()
	f.creating++
	f.maxCreating = max(f.maxCreating, f.creating)
	hold := f.createHold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creating--
	if err := ctx.Err(); err != nil {
		return Ref{}, err
	}
	f.lastCreate = req
	if f.createErr != nil {
		return Ref{}, f.createErr
	}
	f.n++
	ref := Ref{ID: fmt.Sprintf("id%02d", f.n), Name: "fake-" + req.Suffix, Target: req.Spec.Target}
	f.boxes[ref.ID] = &fakeBox{ref: ref, req: req, labels: req.Labels}
	return ref, nil
}

// add puts a container the engine holds without this Backend having made it.
func (f *fakeEngine) add(id string, labels map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.boxes[id] = &fakeBox{ref: Ref{ID: id, Name: "left-" + id}, labels: labels, running: true}
}

func (f *fakeEngine) Start(_ context.Context, r Ref) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.boxes[r.ID]
	if b == nil {
		return Failed(r.Target, errors.New("no such container"), "the engine could not find a resource it needs")
	}
	b.running = true
	f.dialAgent(b, b.req.Entrypoint)
	return nil
}

// dialAgent plays the agent of the socket transport: given --dial
// unix:/run/sshgate/NAME, it dials NAME in the directory bound there.
func (f *fakeEngine) dialAgent(b *fakeBox, cmd []string) {
	if i := slices.Index(cmd, "--dial-each"); i >= 0 && i+1 < len(cmd) {
		for _, bind := range b.req.Binds {
			if rest, ok := strings.CutPrefix(cmd[i+1], "unix:"+bind.Target+"/"); ok {
				go f.dialEach(b, filepath.Join(bind.Source, rest))
			}
		}
		return
	}
	i := slices.Index(cmd, "--dial")
	if i < 0 || i+1 >= len(cmd) {
		return
	}
	for _, bind := range b.req.Binds {
		if rest, ok := strings.CutPrefix(cmd[i+1], "unix:"+bind.Target+"/"); ok {
			c, err := net.Dial("unix", filepath.Join(bind.Source, rest))
			if err == nil {
				go io.Copy(io.Discard, c)
				b.peers = append(b.peers, c)
			}
		}
	}
}

// dialEach plays a keeper agent's --dial-each: one spare connection at a
// time, the next dialed once the gate speaks on it; it ends when the gate's
// socket is gone.
func (f *fakeEngine) dialEach(b *fakeBox, path string) {
	for {
		c, err := net.Dial("unix", path)
		if err != nil {
			return
		}
		var one [1]byte
		if _, err := c.Read(one[:]); err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		if f.boxes[b.ref.ID] != b {
			f.mu.Unlock()
			c.Close()
			return
		}
		b.peers = append(b.peers, c)
		f.mu.Unlock()
		go io.Copy(io.Discard, c)
	}
}

func (f *fakeEngine) Remove(_ context.Context, r Ref) error {
	f.mu.Lock()
	f.removing++
	f.maxRemoving = max(f.maxRemoving, f.removing)
	hold := f.removeHold
	f.mu.Unlock()
	if hold != nil {
		<-hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removing--
	if f.removeErrs > 0 {
		f.removeErrs--
		return errors.New("engine busy: removal timed out")
	}
	if b := f.boxes[r.ID]; b != nil {
		for _, c := range b.peers {
			c.Close()
		}
		delete(f.boxes, r.ID)
		f.removed = append(f.removed, r.ID)
	}
	return nil
}

func (f *fakeEngine) List(_ context.Context, labels map[string]string) ([]Listed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Listed
next:
	for id, b := range f.boxes {
		for k, v := range labels {
			if b.labels[k] != v {
				continue next
			}
		}
		out = append(out, Listed{ID: id, Names: []string{b.ref.Name}, Labels: b.labels})
	}
	return out, nil
}

func (f *fakeEngine) Inspect(_ context.Context, r Ref, since time.Time) (State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.boxes[r.ID]
	if b == nil {
		return State{Gone: true}, nil
	}
	if f.inspectFn != nil {
		return f.inspectFn(b, since)
	}
	return State{Running: b.running, Gone: b.gone}, nil
}

func (f *fakeEngine) Wait(ctx context.Context, _ Ref) (int, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

func (f *fakeEngine) Logs(context.Context, Ref) string { return "" }

func (f *fakeEngine) Exec(_ context.Context, r Ref, x ExecRequest) (*Process, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.boxes[r.ID]
	if b == nil || !b.running {
		return nil, Failed(r.Target, errors.New("not running"), "the container engine failed")
	}
	f.execs++
	if !x.Attach {
		f.dialAgent(b, x.Cmd)
		return &Process{Exited: func(context.Context) (bool, int, error) { return false, 0, nil }}, nil
	}
	ours, theirs := net.Pipe()
	go io.Copy(io.Discard, theirs)
	b.peers = append(b.peers, theirs)
	return &Process{Conn: ours}, nil
}

func (f *fakeEngine) count() (containers, execs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.boxes), f.execs
}

func (f *fakeEngine) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.boxes[id] != nil
}

func (f *fakeEngine) set(id string, fn func(*fakeBox)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.boxes[id])
}

// fakeClock is the injected clock of the idle TTLs.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	t     *testing.T
	b     *Backend
	eng   *fakeEngine
	clock *fakeClock
	dir   string
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	agent := filepath.Join(dir, "sshgate-agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	eng := newFakeEngine()
	cfg := Config{
		AgentPath:     agent,
		ContainersDir: filepath.Join(dir, "containers"),
		GateID:        "gate-a",
		Transport:     TransportExec,
		Now:           clock.Now,
		ReapInterval:  time.Hour, // the tests call reapIdle themselves
		Logger:        slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	before := runtime.NumGoroutine()
	b, err := New(cfg, eng)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n, _ := eng.count(); n != 0 {
			t.Errorf("%d containers left after Close", n)
		}
		// Every goroutine of the Backend (and of the fake's streams) ends
		// with Close; the runtime may take a moment to account for them.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(5 * time.Second)
		for runtime.NumGoroutine() > before {
			select {
			case <-tick.C:
			case <-deadline:
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines: %d before, %d after Close\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
		}
	})
	return &fixture{t: t, b: b, eng: eng, clock: clock, dir: dir}
}

func spec(name string, s gate.DockerSpec) gate.Target {
	if s.Image == "" {
		s.Image = "img"
	}
	return gate.Target{Name: name, Kind: gate.KindDocker, Login: "user", Docker: &s}
}

func (f *fixture) open(t gate.Target, user string) *target.Upstream {
	f.t.Helper()
	up, err := f.b.Open(context.Background(), target.Request{Target: t, ID: &gate.Identity{User: user}, ConnID: gate.NewID()})
	if err != nil {
		f.t.Fatalf("Open %s for %s: %v", t.Name, user, err)
	}
	f.t.Cleanup(func() { _ = up.Release(context.Background()) })
	return up
}
