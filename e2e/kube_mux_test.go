package e2e_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// The warm path of kubernetes keeper pods (pool, per-user): one long-lived
// exec of `sshgate-agent --mux` per pod, each SSH connection a stream over
// it (kubernetes.mux, on by default). What shows it from outside the gate
// is the pod's process tree: a session's shell is a child of the agent
// that serves its connection, which is that one --mux agent for every
// connection, where an exec per connection gives each its own --stdio.

// parentProbe prints the shell's parent: its pid, then its command line.
const parentProbe = `echo $PPID; tr '\0' ' ' < /proc/$PPID/cmdline; echo`

// sessionParent runs parentProbe as alice on target and returns the parent's
// pid and command line.
func sessionParent(t *testing.T, w *kubeWorld, target string) (pid, cmdline string) {
	t.Helper()
	r := harness.Run(w.alice.SSHTo(target, nil, parentProbe), nil, short)
	if r.Code != 0 {
		t.Fatalf("probe: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	pid, cmdline, _ = strings.Cut(strings.TrimSpace(r.Stdout), "\n")
	return pid, strings.TrimSpace(cmdline)
}

// TestKubeMuxOneExec: a per-user pod serves N connections (one after
// another and at once) from one agent exec, the --mux one; a pool pod's
// first connection already finds its --mux agent running (opened when the
// pod started, before the user came). With kubernetes.mux: false the
// same connections get an agent each.
func TestKubeMuxOneExec(t *testing.T) {
	for _, mux := range []bool{true, false} {
		t.Run(fmt.Sprintf("mux=%v", mux), func(t *testing.T) {
			var extra []string
			if !mux {
				extra = append(extra, "  mux: false\n")
			}
			w := newKubeWorld(t, extra...)
			mine := w.target(t, "mux", "--image", harness.TestImage, "--per", "user", "--idle-ttl", "5m")
			const n = 6
			parents := map[string]string{}
			for range n / 2 {
				pid, cl := sessionParent(t, w, mine)
				parents[pid] = cl
			}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for range n / 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := harness.Run(w.alice.SSHTo(mine, nil, parentProbe), nil, short)
					pid, cl, _ := strings.Cut(strings.TrimSpace(r.Stdout), "\n")
					mu.Lock()
					defer mu.Unlock()
					if r.Code != 0 {
						t.Errorf("concurrent probe: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
						return
					}
					parents[pid] = strings.TrimSpace(cl)
				}()
			}
			wg.Wait()
			t.Logf("per-user pod, %d connections: session parents %v", n, parents)
			if pods := w.pods(t, mine); len(pods) != 1 {
				t.Errorf("pods: %v, want the one per-user pod", pods)
			}
			pool := w.target(t, "muxpool", "--image", harness.TestImage, "--pool", "1")
			// The pool fills when the target is first opened.
			if r := harness.Run(w.alice.SSHTo(pool, nil, "true"), nil, short); r.Code != 0 {
				t.Fatalf("pool, first: exit %d stderr %q", r.Code, r.Stderr)
			}
			if !harness.Eventually(short, func() bool { return poolRunning(t, w, pool) == 1 }) {
				t.Fatalf("the pool did not fill: %v", w.pods(t, pool))
			}
			_, poolParent := sessionParent(t, w, pool)
			t.Logf("pool pod: session parent %q", poolParent)

			if mux {
				if len(parents) != 1 {
					t.Errorf("%d connections to a per-user pod had %d agent processes, want one (the --mux exec)", n, len(parents))
				}
				for _, cl := range parents {
					if !strings.HasSuffix(cl, " --mux") {
						t.Errorf("session parent %q, want the agent's --mux", cl)
					}
				}
				if !strings.HasSuffix(poolParent, " --mux") {
					t.Errorf("pool session parent %q, want the agent's --mux", poolParent)
				}
			} else {
				if len(parents) != n {
					t.Errorf("mux off: %d connections had %d agent processes, want one each", n, len(parents))
				}
				for _, cl := range parents {
					if !strings.HasSuffix(cl, " --stdio") {
						t.Errorf("mux off: session parent %q, want an agent --stdio", cl)
					}
				}
			}
			if err := w.gate.Stop(); err != nil {
				t.Errorf("stop gate: %v", err)
			}
			w.waitNoPods(t, mine)
			w.waitNoPods(t, pool)
		})
	}
}

// poolRunning counts target's running pool pods not being deleted.
func poolRunning(t *testing.T, w *kubeWorld, target string) int {
	t.Helper()
	out, err := w.k.run(t.Context(), "admin", nil, "-n", kubeNS, "get", "pods", "-l", "sshgate.target="+target+",sshgate.pool=1",
		"--field-selector", "status.phase=Running", "-o", `jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}`)
	if err != nil {
		return -1
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if len(strings.Fields(l)) == 1 {
			n++
		}
	}
	return n
}
