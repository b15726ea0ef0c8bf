package e2e_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestKubeMuxFailures: what ends a per-user pod's --mux stream ends every
// connection over it with one line and leaves nothing behind in the gate:
// the stream failing (its agent killed: the pod runs on, and the next
// connection gets a new stream), the pod deleted under its connections,
// and the gate stopped with a connection open (no pod left, a clean exit).
func TestKubeMuxFailures(t *testing.T) {
	env, pprof := harness.PProfEnv(t)
	w := newKubeWorldEnv(t, []string{env}, "log:\n  level: debug\nlimits:\n  shutdown_grace: 3s\n")
	goroutines := func() (int, string) {
		n, dump, err := harness.Goroutines(pprof)
		if err != nil {
			t.Fatalf("gate goroutines: %v", err)
		}
		return n, dump
	}
	mine := w.target(t, "muxfail", "--image", harness.TestImage, "--per", "user", "--idle-ttl", "5m")
	// The baseline: the kubernetes client warmed up by a pod of another
	// target, and that pod gone.
	box := w.target(t, "muxbase", "--image", harness.TestImage)
	if r := harness.Run(w.alice.SSHTo(box, nil, "true"), nil, short); r.Code != 0 {
		t.Fatalf("warm-up: exit %d stderr %q", r.Code, r.Stderr)
	}
	w.waitNoPods(t, box)
	var base int
	harness.Eventually(short, func() bool { n, _ := goroutines(); stable := n == base; base = n; return stable })

	// two long sessions over the stream; every line they read is one
	// line, and none is Go's
	both := func(what, want string, end func(pod string)) {
		t.Helper()
		var ss []*bgSSH
		for range 2 {
			s := startSSH(t, w.alice.SSHTo(mine, nil, "echo started $PPID; sleep 60; echo finished"))
			if !s.stdout.WaitFor("started ", short) {
				t.Fatalf("%s: the command did not start: stdout %q stderr %q", what, s.stdout.String(), s.stderr.String())
			}
			ss = append(ss, s)
		}
		if a, b := ss[0].stdout.String(), ss[1].stdout.String(); a != b {
			t.Errorf("%s: the sessions have parents %q and %q, want one --mux agent", what, a, b)
		}
		pods := w.pods(t, mine)
		if len(pods) != 1 {
			t.Fatalf("%s: pods %v, want the per-user one", what, pods)
		}
		at := time.Now()
		end(pods[0])
		for i, s := range ss {
			select {
			case <-s.done:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: session %d still runs 20s on: stdout %q stderr %q", what, i, s.stdout.String(), s.stderr.String())
			}
			line := oneLine(t, what+": stderr", s.stderr.String())
			t.Logf("%s: session %d ended %s after, exit %d, %q", what, i, time.Since(at).Round(time.Millisecond), s.cmd.ProcessState.ExitCode(), line)
			if code := s.cmd.ProcessState.ExitCode(); code != 255 {
				t.Errorf("%s: session %d exit %d, want 255", what, i, code)
			}
			if line != "sshgate: "+want {
				t.Errorf("%s: stderr %q, want %q", what, line, "sshgate: "+want)
			}
			noGoError(t, what, line)
			if strings.Contains(s.stdout.String(), "finished") {
				t.Errorf("%s: session %d ran to its end", what, i)
			}
		}
	}

	// The stream fails: its agent is killed, the pod runs on.
	first, _ := sessionParent(t, w, mine)
	both("agent killed", fmt.Sprintf("connection to target %q lost", mine), func(pod string) {
		w.k.must(t, "admin", nil, "-n", kubeNS, "exec", strings.TrimPrefix(pod, "pod/"), "--", "kill", "-9", first)
	})
	pid, cl := sessionParent(t, w, mine)
	if pid == first || !strings.HasSuffix(cl, " --mux") {
		t.Errorf("after the agent was killed: session parent %s %q, want a new --mux agent (the old one was %s)", pid, cl, first)
	}
	if pods := w.pods(t, mine); len(pods) != 1 {
		t.Errorf("after the agent was killed: pods %v, want the same per-user one", pods)
	}

	// The pod is deleted under its connections.
	both("pod deleted", fmt.Sprintf("container for %s was removed", mine), func(pod string) {
		w.k.must(t, "admin", nil, "-n", kubeNS, "delete", pod, "--wait=false")
	})
	w.waitNoPods(t, mine)
	var n int
	var dump string
	if !harness.Eventually(short, func() bool { n, dump = goroutines(); return n <= base+2 }) {
		t.Errorf("gate goroutines %d after the pod and its stream ended, baseline %d:\n%s", n, base, dump)
	} else {
		t.Logf("gate goroutines: baseline %d, after the stream and pod ended %d", base, n)
	}
	if !w.gate.LogContains("agent stream ended") {
		t.Errorf("the gate did not log the stream's end")
	}

	// The gate stops with a session over the stream: the session ends at
	// limits.shutdown_grace, then the stream, then the pod.
	s := startSSH(t, w.alice.SSHTo(mine, nil, "echo started; sleep 60; echo finished"))
	if !s.stdout.WaitFor("started\n", short) {
		t.Fatalf("after the pod was deleted: the command did not start: stdout %q stderr %q", s.stdout.String(), s.stderr.String())
	}
	t0 := time.Now()
	if err := w.gate.Stop(); err != nil {
		t.Errorf("gate exit on SIGTERM with a session over the stream: %v", err)
	}
	t.Logf("gate stopped in %s", time.Since(t0).Round(time.Millisecond))
	select {
	case <-s.done:
	case <-time.After(short):
		t.Fatalf("the client still runs after the gate stopped")
	}
	line := oneLine(t, "gate stopped: stderr", s.stderr.String())
	if want := "sshgate: this gate is restarting; session ended"; line != want {
		t.Errorf("gate stopped: stderr %q, want %q", line, want)
	}
	if w.gate.LogContains("agent streams still closing") {
		t.Errorf("the gate stopped before its agent streams ended")
	}
	w.waitNoPods(t, mine)
}
