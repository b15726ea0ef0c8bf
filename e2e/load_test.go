package e2e_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// Many connections at once, each checking its own output and exit status;
// afterwards the gate holds no more fds than before.
func TestConcurrentConnections(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{})
	harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
	base := w.gate.Stats(t)

	const workers, each = 10, 4
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				want := fmt.Sprintf("w%d-%d", i, j)
				r := harness.Run(w.alice.SSHTo("web-1", nil, "cat; echo "+want+" >&2; exit 7"), []byte(want), short)
				if r.Code != 7 || r.Stdout != want || strings.TrimSpace(r.Stderr) != want || r.Err != nil {
					t.Errorf("%s: exit %d stdout %q stderr %q (%v)", want, r.Code, r.Stdout, r.Stderr, r.Err)
				}
			}
		}()
	}
	wg.Wait()
	w.gate.WaitBaseline(t, base, 2, 30*time.Second)
}

// Environment the client sends (SendEnv/SetEnv) reaches the target as it
// would reach the sshd directly (the test sshd accepts LANG and LC_*).
func TestEnvLikeOpenSSH(t *testing.T) {
	t.Parallel()
	gateOnly(t)
	w := newWorld(t, worldOptions{})
	d := w.direct(t)
	const cmd = `echo "LANG=$LANG LC_E2E=$LC_E2E OTHER=$OTHER_E2E"`
	opts := []string{"SetEnv=LANG=C.UTF-8 LC_E2E=hello OTHER_E2E=nope"}
	want := harness.MustRun(t, d.WithOpts(opts...).SSHTo("", nil, cmd), nil, short)
	got := harness.MustRun(t, w.alice.WithOpts(opts...).SSHTo("web-1", nil, cmd), nil, short)
	if got.Stdout != want.Stdout {
		t.Errorf("env through the gate %q, directly %q", got.Stdout, want.Stdout)
	}
}
