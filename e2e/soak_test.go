package e2e_test

import (
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

// Soak: one gate, 20 sessions at once to a docker target and 20 to an sshd
// target for about 20 s, each a loop of sha256sum round trips over random
// data. Every digest matches, every session exits 0, and afterwards the
// gate's fds and goroutines come back to their baseline and no container is
// left once the gate stops.
func TestSoak(t *testing.T) {
	t.Parallel()
	gateOnly(t)
	harness.RequireDocker(t)
	harness.AgentBinary(t)
	metrics := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	// All 40 clients come from 127.0.0.1: let them authenticate at once.
	cfg := filepath.Join(t.TempDir(), "gate.yaml")
	if err := os.WriteFile(cfg, []byte("limits:\n  max_unauthenticated_per_source: 64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, worldOptions{gate: harness.GateOptions{Args: []string{"--metrics-listen", metrics, "--config", cfg}}})
	g := w.gate
	g.Admin(t, "env", "add", "dev")
	box := "soak-" + strconv.Itoa(g.Port)
	g.Admin(t, "target", "add", box, "--env", "dev", "--login", "user", "--docker", harness.TestImage, "--user", "1000")
	g.Admin(t, "grant", "alice", "--target", box)

	goroutines := func() int {
		m, err := harness.Scrape(metrics)
		if err != nil {
			t.Fatalf("scrape: %v", err)
		}
		v, ok := m["go_goroutines"]
		if !ok {
			t.Fatalf("no go_goroutines in /metrics")
		}
		return int(v)
	}
	roundTrip := func(target string, data []byte) error {
		sum := sha256.Sum256(data)
		r := harness.Run(w.alice.SSHTo(target, nil, "sha256sum"), data, short)
		if r.Err != nil || r.Code != 0 {
			return &soakError{target, "exit " + strconv.Itoa(r.Code) + " stderr " + strconv.Quote(r.Stderr)}
		}
		if err := harness.CheckSHA256Sum(r.Stdout, sum[:]); err != nil {
			return &soakError{target, err.Error()}
		}
		return nil
	}
	// Warm up both targets (the docker one starts its container), then
	// take the baseline.
	for _, target := range []string{"web-1", box} {
		if err := roundTrip(target, []byte("warm")); err != nil {
			t.Fatal(err)
		}
	}
	var baseG int
	harness.Eventually(short, func() bool { baseG = goroutines(); return true })
	base := g.Stats(t)

	const perTarget, chunk = 20, 256 << 10
	const soakFor = 20 * time.Second
	var (
		bytesMoved, sessions, mismatches atomic.Int64
		wg                               sync.WaitGroup
	)
	// Peak figures, for the log.
	sampler := harness.StartSampler(g.PID(), g.DataDir, metrics, 500*time.Millisecond)
	start := time.Now()
	end := start.Add(soakFor)
	for _, target := range []string{"web-1", box} {
		for i := 0; i < perTarget; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				data := make([]byte, chunk)
				for time.Now().Before(end) {
					rand.Read(data)
					if err := roundTrip(target, data); err != nil {
						mismatches.Add(1)
						t.Error(err)
						return
					}
					sessions.Add(1)
					bytesMoved.Add(chunk)
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	samples := sampler.Stop()
	peakG := harness.Peak(samples, func(s harness.GateSample) int64 { return int64(s.Goroutines) })
	peakFDs := harness.Peak(samples, func(s harness.GateSample) int64 { return int64(s.FDs) })

	var afterG int
	okG := harness.Eventually(short, func() bool { afterG = goroutines(); return afterG <= baseG+3 })
	after := g.Stats(t)
	// Every fd but the store's comes back; the store's pool keeps at most
	// sqlite.MaxConns connections, each a database and a WAL fd (the
	// baseline holds at least one, and the shared -shm fd).
	storeMax := base.Store + 2*sqlite.MaxConns
	okFD := harness.Eventually(short, func() bool {
		after = g.Stats(t)
		return after.Leakable() <= base.Leakable()+2 && after.Store <= storeMax
	})
	t.Logf("soak: %d sessions (%d per target at once) in %s, %d MiB moved, %d failures",
		sessions.Load(), perTarget, elapsed.Round(time.Millisecond), bytesMoved.Load()>>20, mismatches.Load())
	t.Logf("gate fds: before %d, peak %d, after %d (before: %s; after: %s)", base.FDs, peakFDs, after.FDs, base, after)
	t.Logf("gate goroutines: before %d, peak %d, after %d", baseG, peakG, afterG)
	if !okFD {
		t.Errorf("gate fds did not come back (non-store fds at most %d, store fds at most %d): before %s, after %s\nopen fds:\n%s", base.Leakable()+2, storeMax, base, after, harness.FDList(g.PID()))
	}
	if !okG {
		t.Errorf("gate goroutines did not come back: before %d, after %d", baseG, afterG)
	}
	if sessions.Load() < 2*perTarget {
		t.Errorf("only %d sessions completed", sessions.Load())
	}

	if err := g.Stop(); err != nil {
		t.Errorf("gate stop: %v", err)
	}
	waitNoContainers(t, box, short)
}

type soakError struct{ target, what string }

func (e *soakError) Error() string { return e.target + ": " + e.what }
