package e2e_test

import (
	"os"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// maxIdleGoroutines is what one idle relayed session (one connection to a
// real sshd, one exec session running, stdin at EOF, no data moving) may
// cost the gate: x/crypto's three per SSH connection (transport reader,
// key-exchange loop, mux loop) on the user's and the target's connection,
// the connection's loop (which also serves what the target opens, the
// session's requests and the end of its output), and the two readers of the
// target's stdout and stderr.
const maxIdleGoroutines = 9

// The goroutines an idle relayed session holds at the gate, and its heap
// and stacks (logged: the race-built gate's figures are not the release
// build's).
func TestIdleRelayedSessionCost(t *testing.T) {
	gateOnly(t)
	env, pprof := harness.PProfEnv(t)
	w := newWorld(t, worldOptions{gate: harness.GateOptions{Env: []string{env}}})
	// Warm up: one session through, so that what the first costs once is
	// in the baseline.
	harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
	settle := func() (g int, heap, stack int64) {
		time.Sleep(time.Second)
		g, _, err := harness.Goroutines(pprof)
		if err != nil {
			t.Fatal(err)
		}
		if heap, err = harness.HeapAlloc(pprof); err != nil {
			t.Fatal(err)
		}
		if stack, err = harness.StackInuse(pprof); err != nil {
			t.Fatal(err)
		}
		return g, heap, stack
	}
	g0, h0, s0 := settle()
	const n = 10
	for i := 0; i < n; i++ {
		cl := w.alice.XDial(t, "web-1")
		s, err := cl.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start("sleep 600"); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for the sleeps to run (their exec requests were answered).
	g1, h1, s1 := settle()
	per := float64(g1-g0) / n
	t.Logf("per idle relayed session: %.1f goroutines, heap %.1f KiB, stacks %.1f KiB",
		per, float64(h1-h0)/n/1024, float64(s1-s0)/n/1024)
	if per > maxIdleGoroutines {
		_, dump, _ := harness.Goroutines(pprof)
		if p := os.Getenv("SSHGATE_E2E_DUMP"); p != "" {
			_ = os.WriteFile(p, []byte(dump), 0o644)
		}
		t.Fatalf("%.1f goroutines per idle relayed session, want at most %d\n%s", per, maxIdleGoroutines, dump)
	}
}
