package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// --- docker targets -----------------------------------------------------

// The docker section runs its own gate (data directory set up through the
// CLI, sshgate-agent beside the binary) with four targets from one image,
// and compares what a user gets through it with the same engine driven by
// the docker CLI in the same run.
const (
	warmPool = 4 // --pool of the warm first-byte rows

	targetCold   = "box"    // --per connection, no pool
	targetPool   = "pool"   // --pool warmPool
	targetUser   = "mine"   // --per user
	targetShells = "shells" // --pool -shells-pool, for the burst of shells
)

// timeCmd runs cmd and returns the time to the first byte on its stdout and
// to its exit.
func timeCmd(cmd *exec.Cmd) (first, exit time.Duration, err error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	var b [1]byte
	if n, _ := stdout.Read(b[:]); n > 0 {
		first = time.Since(start)
	}
	io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	exit = time.Since(start)
	if first == 0 {
		first = exit
	}
	if err != nil {
		return first, exit, fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return first, exit, nil
}

type dockerBench struct {
	o       *opts
	g       *gate
	key     string
	gateID  string // the gate's sshgate.gate label
	benchID string // sshgate.gate label of the containers the bench runs itself
	base    string // the plain `sleep 600` container: docker exec baseline
	// pendingTake is the pool just before a connection took one of it: the
	// pool is refilled once the taken one is gone and warmPool run again.
	pendingTake map[string]bool
}

func (d *dockerBench) ep(target string) *endpoint {
	ep := gateEndpoint(d.g, d.key)
	ep.login = "alice+" + target
	return ep
}

// dockerRun prepares `docker run --rm --network none [-d] IMAGE args...`,
// labelled so that cleanup finds it.
func (d *dockerBench) dockerRun(ctx context.Context, detach bool, args ...string) *exec.Cmd {
	a := []string{"run", "--rm", "--network", "none", "--label", "sshgate.gate=" + d.benchID}
	if detach {
		a = append(a, "-d")
	}
	a = append(a, harness.TestImage)
	return exec.CommandContext(ctx, "docker", append(a, args...)...)
}

// settle waits until the gate's engine work from the previous measure is
// done: no per-connection container of the cold target left, the warm pool
// full and running again (without the container a connection took).
func (d *dockerBench) settle(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		list, err := harness.DockerPS(ctx, "sshgate.gate="+d.gateID)
		if err != nil {
			return err
		}
		cold, pool, running, kept := 0, 0, 0, 0
		for _, c := range list {
			switch c.Labels["sshgate.target"] {
			case targetCold:
				cold++
			case targetPool:
				pool++
				if c.Running {
					running++
				}
				if d.pendingTake[c.ID] {
					kept++
				}
			}
		}
		ok := cold == 0 && pool == warmPool && running == warmPool && (d.pendingTake == nil || kept < warmPool)
		if ok {
			d.pendingTake = nil
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gate containers did not settle: %d of target %s left, pool %s %d (%d running, %d before the last take), want %d\ngate log:\n%s",
				cold, targetCold, targetPool, pool, running, kept, warmPool, tail(d.g.log, 15))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// poolIDs are the containers of the warm pool now.
func (d *dockerBench) poolIDs(ctx context.Context) map[string]bool {
	list, _ := harness.DockerPS(ctx, "sshgate.gate="+d.gateID, "sshgate.target="+targetPool)
	m := map[string]bool{}
	for _, c := range list {
		m[c.ID] = true
	}
	return m
}

// waitShellsPool waits until the shells target holds exactly its pool, all
// running, and no per-connection container; it returns how long that took
// and what was left when it gave up.
func (d *dockerBench) waitShellsPool(ctx context.Context, timeout time.Duration) (took time.Duration, pool, other int, err error) {
	start := time.Now()
	for {
		list, err := harness.DockerPS(ctx, "sshgate.gate="+d.gateID, "sshgate.target="+targetShells)
		if err != nil {
			return 0, 0, 0, err
		}
		pool, other = 0, 0
		running := 0
		for _, c := range list {
			if c.Labels["sshgate.pool"] == "1" {
				pool++
				if c.Running {
					running++
				}
			} else {
				other++
			}
		}
		if other == 0 && pool == d.o.shellsPool && running == pool {
			return time.Since(start), pool, other, nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), pool, other, fmt.Errorf("after %s: target %s has %d pool containers (%d running, want %d) and %d others",
				timeout, targetShells, pool, running, d.o.shellsPool, other)
		}
		if err := ctx.Err(); err != nil {
			return 0, pool, other, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dsamples are the latencies of one way of getting "hi" out of a container.
type dsamples struct {
	first, exit []time.Duration
	cpu         float64 // gate CPU seconds over the runs
}

func (s *dsamples) afterOutput() []time.Duration {
	out := make([]time.Duration, len(s.exit))
	for i := range s.exit {
		out[i] = s.exit[i] - s.first[i]
	}
	return out
}

func medP90(ds []time.Duration) string {
	return fmt.Sprintf("%s / %s", ms(percentile(ds, 0.5)), ms(percentile(ds, 0.9)))
}

// burstResult is n clients started at once.
type burstResult struct {
	all      time.Duration   // until the last one was ready
	each     []time.Duration // per client that got ready
	failed   int
	firstErr string
}

// burst starts n commands at once and waits for "ready" on each one's
// stdout; input (may be empty) is written to each one's stdin at start.
func burst(ctx context.Context, n int, mk func(i int) *exec.Cmd, input string) burstResult {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var (
		mu  sync.Mutex
		r   burstResult
		wg  sync.WaitGroup
		go_ = make(chan struct{})
	)
	fail := func(err error) {
		mu.Lock()
		r.failed++
		if r.firstErr == "" {
			r.firstErr = err.Error()
		}
		mu.Unlock()
	}
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		cmds[i] = mk(i)
	}
	var start time.Time
	for _, cmd := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				fail(err)
				return
			}
			var stdin io.WriteCloser
			if input != "" {
				if stdin, err = cmd.StdinPipe(); err != nil {
					fail(err)
					return
				}
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			<-go_
			if err := cmd.Start(); err != nil {
				fail(err)
				return
			}
			if stdin != nil {
				io.WriteString(stdin, input)
				stdin.Close()
			}
			var seen bytes.Buffer
			buf := make([]byte, 4096)
			ready := false
			for {
				k, err := stdout.Read(buf)
				seen.Write(buf[:k])
				if !ready && bytes.Contains(seen.Bytes(), []byte("ready")) {
					ready = true
					d := time.Since(start)
					mu.Lock()
					r.each = append(r.each, d)
					mu.Unlock()
				}
				if err != nil {
					break
				}
			}
			werr := cmd.Wait()
			if !ready {
				fail(fmt.Errorf("no \"ready\" (%v): %s", werr, bytes.TrimSpace(stderr.Bytes())))
			}
		}()
	}
	start = time.Now()
	close(go_)
	wg.Wait()
	r.all = maxDuration(r.each)
	return r
}

func maxDuration(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// runDocker is the docker section: it adds its rows to t and notes, and
// stops its gate (checking that no container is left) before it returns.
func runDocker(ctx context.Context, o *opts, bin, tmp, work, key, engine string, t *table, notes *[]string) error {
	d := &dockerBench{o: o, key: key, benchID: "bench-" + randomHex(6)}
	// Whatever happens (error, Ctrl-C), the containers the bench ran
	// itself go; the gate's go with it (on SIGTERM) or by its label.
	// On an interrupt, a docker CLI killed while the engine creates its
	// container leaves one that shows a moment later: a second pass.
	var finished atomic.Bool
	reg.addHook(func() {
		for pass := 0; pass < 2; pass++ {
			if pass > 0 {
				if finished.Load() {
					break
				}
				time.Sleep(time.Second)
			}
			harness.RemoveLabelled("sshgate.gate=" + d.benchID)
			if d.gateID != "" {
				harness.RemoveLabelled("sshgate.gate=" + d.gateID)
			}
		}
	})
	defer finished.Store(true)

	dir := filepath.Join(tmp, "gate-docker")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	g, err := newGate(ctx, "docker", bin, dir, key+".pub", "")
	if err != nil {
		return fmt.Errorf("set up gate docker: %w", err)
	}
	d.g = g
	for _, ta := range [][]string{
		{targetCold},
		{targetPool, "--pool", strconv.Itoa(warmPool)},
		{targetUser, "--per", "user"},
		{targetShells, "--pool", strconv.Itoa(o.shellsPool)},
	} {
		args := append([]string{"target", "add", ta[0], "--env", "bench", "--docker", harness.TestImage}, ta[1:]...)
		if _, err := g.admin(ctx, args...); err != nil {
			return fmt.Errorf("set up gate docker: %w", err)
		}
	}
	if _, err := g.admin(ctx, "grant", "alice", "--env", "bench"); err != nil {
		return fmt.Errorf("set up gate docker: %w", err)
	}
	// At debug level the gate logs how long each agent exec took to
	// connect: the breakdown in the notes.
	cfg := filepath.Join(dir, "sshgate.yaml")
	if err := os.WriteFile(cfg, []byte("log:\n  level: debug\n"), 0o600); err != nil {
		return err
	}
	if err := g.serve(ctx, dir, cfg); err != nil {
		return fmt.Errorf("gate docker: %w", err)
	}
	if d.gateID = gateIDFromLog(g); d.gateID == "" {
		return fmt.Errorf("gate docker: its docker backend is not ready:\n%s", tail(g.log, 15))
	}
	logf("gate docker on %s (pid %d, containers labelled sshgate.gate=%s)", g.addr, g.PID(), d.gateID)

	// The pools are filled when the gate starts: wait for both, so that
	// their starts do not land in the first measures.
	logf("docker: waiting for the pools (%d + %d containers)", warmPool, o.shellsPool)
	if _, _, _, err := d.waitShellsPool(ctx, 3*time.Minute); err != nil {
		return fmt.Errorf("shells pool: %w\ngate log:\n%s", err, tail(g.log, 15))
	}
	if err := d.settle(ctx); err != nil {
		return err
	}
	out, err := run(ctx, nil, d.dockerRun(ctx, true, "sleep", "600").Args...)
	if err != nil {
		return fmt.Errorf("start the exec baseline container: %w", err)
	}
	d.base = strings.TrimSpace(out)

	// One of each first (page cache, image layers, the per-user container:
	// its first connection starts it, and is reported apart).
	var userFirst time.Duration
	for _, w := range []struct {
		name string
		cmd  func() *exec.Cmd
	}{
		{"docker run", func() *exec.Cmd { return d.dockerRun(ctx, false, "echo", "hi") }},
		{"docker exec", func() *exec.Cmd { return exec.CommandContext(ctx, "docker", "exec", d.base, "echo", "hi") }},
		{"gate " + targetCold, func() *exec.Cmd { return d.ep(targetCold).ssh(ctx, nil, "echo", "hi") }},
		{"gate " + targetUser, func() *exec.Cmd { return d.ep(targetUser).ssh(ctx, nil, "echo", "hi") }},
	} {
		if err := d.settle(ctx); err != nil {
			return err
		}
		first, _, err := timeCmd(w.cmd())
		if err != nil {
			return fmt.Errorf("first %s: %w\ngate log:\n%s", w.name, err, tail(g.log, 15))
		}
		if w.name == "gate "+targetUser {
			userFirst = first
		}
	}

	// Latency: every run takes each way once, the order rotating, and each
	// measure starts with the engine idle (the previous container removed,
	// the pool full again).
	type way struct {
		name   string
		target string // "" for the docker CLI
		cmd    func() *exec.Cmd
		s      dsamples
	}
	ways := []*way{
		{name: "docker run", cmd: func() *exec.Cmd { return d.dockerRun(ctx, false, "echo", "hi") }},
		{name: "gate cold", target: targetCold},
		{name: "docker exec", cmd: func() *exec.Cmd { return exec.CommandContext(ctx, "docker", "exec", d.base, "echo", "hi") }},
		{name: "gate pool", target: targetPool},
		{name: "gate per-user", target: targetUser},
	}
	logf("docker: first byte, %d runs x %d ways", o.runs, len(ways))
	logOff := logSize(g.log)
	for i := 0; i < o.runs; i++ {
		for k := range ways {
			w := ways[(i+k)%len(ways)]
			if err := d.settle(ctx); err != nil {
				return err
			}
			if w.target == "" {
				first, exit, err := timeCmd(w.cmd())
				if err != nil {
					return err
				}
				w.s.first, w.s.exit = append(w.s.first, first), append(w.s.exit, exit)
				continue
			}
			if w.target == targetPool {
				d.pendingTake = d.poolIDs(ctx)
			}
			cpu0 := harness.CPUSeconds(g.PID())
			first, exit, err := timeSSH(ctx, d.ep(w.target), "echo", "hi")
			if err != nil {
				return fmt.Errorf("%w\ngate log:\n%s", err, tail(g.log, 15))
			}
			w.s.cpu += harness.CPUSeconds(g.PID()) - cpu0
			w.s.first, w.s.exit = append(w.s.first, first), append(w.s.exit, exit)
		}
	}
	if err := d.settle(ctx); err != nil {
		return err
	}
	dRun, gCold, dExec, gPool, gUser := &ways[0].s, &ways[1].s, &ways[2].s, &ways[3].s, &ways[4].s
	gt := gateTimings(g.log, logOff)
	perConn := func(s *dsamples) string {
		return fmt.Sprintf("%.1f ms/conn", s.cpu*1000/float64(len(s.first)))
	}
	t.section(fmt.Sprintf("docker targets (%s), %d runs each (ms, median / p90; direct: the same engine through the docker CLI; gate CPU per connection)", harness.TestImage, o.runs))
	t.row("docker run --rm echo hi (to exit)", medP90(dRun.exit), "", "", "")
	for _, r := range []struct {
		label  string
		direct *dsamples
		gate   *dsamples
	}{
		{"first byte, cold (--per connection) vs docker run", dRun, gCold},
		{fmt.Sprintf("first byte, warm pool (--pool %d) vs docker exec", warmPool), dExec, gPool},
		{"first byte, per-user warm (--per user) vs docker exec", dExec, gUser},
	} {
		t.row(r.label, medP90(r.direct.first), medP90(r.gate.first),
			ratio(percentile(r.gate.first, 0.5).Seconds(), percentile(r.direct.first, 0.5).Seconds()), perConn(r.gate))
	}
	for _, r := range []struct {
		label  string
		direct *dsamples
		gate   *dsamples
	}{
		{"exit after output, cold vs docker run --rm", dRun, gCold},
		{"exit after output, warm pool vs docker exec", dExec, gPool},
		{"exit after output, per-user vs docker exec", dExec, gUser},
	} {
		da, ga := r.direct.afterOutput(), r.gate.afterOutput()
		t.row(r.label, medP90(da), medP90(ga), ratio(percentile(ga, 0.5).Seconds(), percentile(da, 0.5).Seconds()), "")
	}
	med := func(ds []time.Duration) time.Duration { return percentile(ds, 0.5) }
	*notes = append(*notes,
		fmt.Sprintf("docker: engine %s, local socket transport; gate containers labelled sshgate.gate=%s, the bench's own sshgate.gate=%s", engine, d.gateID, d.benchID),
		fmt.Sprintf("docker: per-user first connection (starts the container): %s ms to first byte; the per-user rows are later connections of the same user", ms(userFirst)),
		"docker: `exit after output` is the time from the first byte of `echo hi` to the client's exit (stdin closed); docker run --rm includes the container's removal",
		fmt.Sprintf("docker: the gate's log of those runs (ms, median / p90): cold, create + start until the agent connected %s; warm, from the target open to the gate logged in to its agent (`target connected`): pool %s, per-user %s; agents exec'd because none was waiting on warm.sock: pool %d, per-user %d",
			medP90(gt["start "+targetCold]), medP90(gt["connected "+targetPool]), medP90(gt["connected "+targetUser]), len(gt["exec "+targetPool]), len(gt["exec "+targetUser])),
	)

	// Throughput into a running container: the per-user one through the
	// gate, a plain `docker run -d ... sleep 600` one by docker exec -i.
	src := filepath.Join(work, "docker-src.bin")
	logf("docker: writing a %s source file in %s", humanSize(o.size), work)
	if _, err := makeSource(src, o.size); err != nil {
		return err
	}
	defer os.Remove(src)
	gib := float64(o.size) / (1 << 30)
	var mbDirect, mbGate, cpuGate []float64
	userBox := ""
	if list, err := harness.DockerPS(ctx, "sshgate.gate="+d.gateID, "sshgate.target="+targetUser); err == nil && len(list) == 1 {
		userBox = list[0].ID
	}
	// CPU seconds per GiB on each path: the client, the engine (dockerd,
	// containerd, shims), the container's cgroup (agent + cat, or cat).
	type cpuSplit struct{ client, engine, box float64 }
	var cpuG, cpuD cpuSplit
	logf("docker: throughput, %d runs x 2 paths", o.repeat)
	for rep := 0; rep < o.repeat; rep++ {
		order := []bool{false, true}
		if rep%2 == 1 {
			order = []bool{true, false}
		}
		for _, viaGate := range order {
			f, err := os.Open(src)
			if err != nil {
				return err
			}
			var cmd *exec.Cmd
			if viaGate {
				cmd = d.ep(targetUser).ssh(ctx, nil, "cat > /dev/null")
			} else {
				cmd = exec.CommandContext(ctx, "docker", "exec", "-i", d.base, "sh", "-c", "cat > /dev/null")
			}
			cmd.Stdin = f
			var outb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &outb, &outb
			box, split := d.base, &cpuD
			if viaGate {
				box, split = userBox, &cpuG
			}
			cpu0, eng0, box0 := harness.CPUSeconds(g.PID()), engineCPU(), containerCPU(box)
			start := time.Now()
			err = cmd.Run()
			el := time.Since(start)
			cpu := harness.CPUSeconds(g.PID()) - cpu0
			// A shim that exits meanwhile takes its CPU time along: never below 0.
			split.engine += max(engineCPU()-eng0, 0) / gib / float64(o.repeat)
			split.box += (containerCPU(box) - box0) / gib / float64(o.repeat)
			split.client += childCPU(cmd) / gib / float64(o.repeat)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, outb.String())
			}
			mbs := float64(o.size) / 1e6 / el.Seconds()
			if viaGate {
				mbGate, cpuGate = append(mbGate, mbs), append(cpuGate, cpu/gib)
				logf("  cat > /dev/null  gate        %7.1f MB/s  gate cpu %.2f s/GiB", mbs, cpu/gib)
			} else {
				mbDirect = append(mbDirect, mbs)
				logf("  cat > /dev/null  docker exec %7.1f MB/s", mbs)
			}
		}
	}
	t.section(fmt.Sprintf("docker targets, %s into a running container (MB/s, best of %d, connection setup included; gate CPU: s per GiB, mean)", humanSize(o.size), o.repeat))
	t.row("cat > /dev/null: per-user via gate vs docker exec -i", fmt.Sprintf("%.0f", maxf(mbDirect)), fmt.Sprintf("%.0f", maxf(mbGate)),
		ratio(maxf(mbGate), maxf(mbDirect)), fmt.Sprintf("%.2f s/GiB", meanf(cpuGate)))
	boxCPU := func(v float64) string {
		if userBox == "" || containerCPU(d.base) < 0 {
			return "?"
		}
		return fmt.Sprintf("%.2f", v)
	}
	*notes = append(*notes, fmt.Sprintf("docker: CPU s per GiB (mean), via the gate: ssh client %.2f, gate %.2f, container %s (agent + cat), engine %.2f; via docker exec -i: docker CLI %.2f, engine %.2f (dockerd, containerd, shims: the stream's path), container %s (cat); the engine figure includes whatever else uses it on this machine",
		cpuG.client, meanf(cpuGate), boxCPU(cpuG.box), cpuG.engine, cpuD.client, cpuD.engine, boxCPU(cpuD.box)))
	os.Remove(src)

	// Shells at once: n PTY shells through the gate (the pool holds
	// -shells-pool of them, the rest start cold), each typing a command
	// whose output says it is ready; as the engine's reference, n
	// `docker run --rm ... echo ready` at once. At most 10 clients share a
	// source address (127.0.0.2, .3, ...), under the gate's default limit
	// of 16 unauthenticated connections per source.
	if err := d.settle(ctx); err != nil {
		return err
	}
	if _, _, _, err := d.waitShellsPool(ctx, 2*time.Minute); err != nil {
		return err
	}
	logf("docker: %d PTY shells at once through the gate (pool of %d)", o.shells, o.shellsPool)
	cpu0 := harness.CPUSeconds(g.PID())
	gb := burst(ctx, o.shells, func(i int) *exec.Cmd {
		return d.ep(targetShells).ssh(ctx, []string{"-tt", "-o", fmt.Sprintf("BindAddress=127.0.0.%d", 2+i/10)})
	}, "echo rea\"\"dy\nexit\n")
	burstCPU := harness.CPUSeconds(g.PID()) - cpu0
	if ctx.Err() != nil {
		return ctx.Err()
	}
	logf("docker: waiting for the %d per-connection containers to go and the pool to refill", o.shells)
	settleTook, poolLeft, otherLeft, serr := d.waitShellsPool(ctx, time.Minute)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	logf("docker: %d x docker run --rm echo ready at once", o.shells)
	db := burst(ctx, o.shells, func(i int) *exec.Cmd { return d.dockerRun(ctx, false, "echo", "ready") }, "")
	if ctx.Err() != nil {
		return ctx.Err()
	}
	cold := o.shells - o.shellsPool
	var engineTook time.Duration
	var engineErr error
	if cold > 0 {
		logf("docker: %d containers created and started at once through the engine API", cold)
		engineTook, engineErr = engineBurst(ctx, cold, harness.TestImage, map[string]string{"sshgate.gate": d.benchID})
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	t.section(fmt.Sprintf("docker targets, %d at once (s until the last is ready; median of each in the notes)", o.shells))
	fmtBurst := func(r burstResult) string {
		if len(r.each) == 0 {
			return "-"
		}
		s := fmt.Sprintf("%.2f", r.all.Seconds())
		if r.failed > 0 {
			s += fmt.Sprintf(" (%d failed)", r.failed)
		}
		return s
	}
	gateAll, directAll := gb.all.Seconds(), db.all.Seconds()
	if gb.failed > 0 || db.failed > 0 {
		gateAll = 0 // no ratio over an incomplete burst
	}
	t.row(fmt.Sprintf("%d PTY shells, pool %d, vs %d docker run", o.shells, o.shellsPool, o.shells), fmtBurst(db), fmtBurst(gb),
		ratio(gateAll, directAll), fmt.Sprintf("%.1f ms/shell", burstCPU*1000/float64(o.shells)))
	if cold > 0 {
		e := fmt.Sprintf("%.2f", engineTook.Seconds())
		r := ratio(gateAll, engineTook.Seconds())
		if engineErr != nil {
			e, r = "- ("+engineErr.Error()+")", ""
		}
		t.row(fmt.Sprintf("%d PTY shells, pool %d, vs %d containers created + started at once (engine API)", o.shells, o.shellsPool, cold), e, fmtBurst(gb), r, "")
	}
	*notes = append(*notes, fmt.Sprintf("docker: %d shells: each ready after %s / %s s (median / p90), first at %.2f s; %d docker run: median %.2f s",
		o.shells, secs(percentile(gb.each, 0.5)), secs(percentile(gb.each, 0.9)), minDuration(gb.each).Seconds(), o.shells, percentile(db.each, 0.5).Seconds()))
	for _, r := range []struct {
		what string
		b    burstResult
	}{{"gate", gb}, {"docker run", db}} {
		if r.b.failed > 0 {
			*notes = append(*notes, fmt.Sprintf("docker: %d at once, %s: %d of %d failed; first: %s", o.shells, r.what, r.b.failed, o.shells, r.b.firstErr))
		}
	}
	left := fmt.Sprintf("after the shells: %d per-connection containers left, pool back to %d/%d %.1f s after the last shell ended", otherLeft, poolLeft, o.shellsPool, settleTook.Seconds())
	if serr != nil {
		left = "after the shells: " + serr.Error()
	}

	// The end: the exec baseline goes, the gate stops on SIGTERM (removing
	// its pools and per-user container), and nothing may be left.
	run(ctx, nil, "docker", "rm", "-f", d.base)
	t0 := time.Now()
	stopped := g.Terminate(time.Minute)
	stopTook := time.Since(t0)
	gl, err1 := harness.DockerPS(ctx, "sshgate.gate="+d.gateID)
	bl, err2 := harness.DockerPS(ctx, "sshgate.gate="+d.benchID)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	how := fmt.Sprintf("the gate exited %.1f s after SIGTERM", stopTook.Seconds())
	if !stopped {
		how = "the gate did not exit within 1m of SIGTERM"
	}
	*notes = append(*notes, fmt.Sprintf("docker: containers left: %s; %s, leaving %d with its label and %d of the bench's own", left, how, len(gl), len(bl)))

	*notes = append(*notes,
		"docker: reference, ContainerSSH on this kind of machine: ~0.4 s to first byte, 1.3 s to exit with stdin closed, ~60 MB/s, 4.75 s to open 20 shells at once",
		fmt.Sprintf("docker: aims: cold first byte within 50 ms of the engine's create+start (gate - docker run, medians: %+.1f ms); warm first byte < 100 ms (pool %s, per-user %s ms); "+
			"exit within 50 ms of the process ending (cold %s, pool %s, per-user %s ms); throughput >= 300 MB/s with a local engine (%.0f MB/s); %d shells ready < 3 s from the warm pool (%s s, pool %d)",
			float64((med(gCold.first)-med(dRun.first)).Microseconds())/1000, ms(med(gPool.first)), ms(med(gUser.first)),
			ms(med(gCold.afterOutput())), ms(med(gPool.afterOutput())), ms(med(gUser.afterOutput())),
			maxf(mbGate), o.shells, fmtBurst(gb), o.shellsPool),
	)
	return nil
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

func minDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

// containerCPU is the CPU time of every process a container ran (exited
// ones included), from its cgroup: cgroup v1 cpuacct or v2 cpu.stat. -1 when
// neither is found.
func containerCPU(id string) float64 {
	for _, p := range []string{
		"/sys/fs/cgroup/cpuacct/docker/" + id + "/cpuacct.usage",
		"/sys/fs/cgroup/cpu,cpuacct/docker/" + id + "/cpuacct.usage",
	} {
		if b, err := os.ReadFile(p); err == nil {
			ns, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
			if err == nil {
				return ns / 1e9
			}
		}
	}
	for _, p := range []string{
		"/sys/fs/cgroup/system.slice/docker-" + id + ".scope/cpu.stat",
		"/sys/fs/cgroup/docker/" + id + "/cpu.stat",
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
				if us, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					return us / 1e6
				}
			}
		}
	}
	return -1
}

// engineCPU is the CPU time of dockerd, containerd and the containerd
// shims now running (a docker exec stream passes through all three). On a
// shared machine it includes what others make the engine do.
func engineCPU() float64 {
	ents, _ := os.ReadDir("/proc")
	total := 0.0
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c := harness.Comm(p); c == "dockerd" || c == "containerd" || strings.HasPrefix(c, "containerd-shim") {
			total += harness.CPUSeconds(p)
		}
	}
	return total
}

// childCPU is the user+system time of a finished command.
func childCPU(cmd *exec.Cmd) float64 {
	if cmd.ProcessState == nil {
		return 0
	}
	return (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
}

// gateTimings reads the gate's own account of where a connection's time
// went, from its log after offset: "container started ... took=" (create,
// start and the agent's connection, cold) and "agent exec ... took=" (exec
// of a fresh agent in a running container until it connected, warm, when
// its keeper offered no connection), by target name from the container
// name; "target connected ... took=" (Open and the login to the agent) by
// the target= field.
func gateTimings(logFile string, offset int64) map[string][]time.Duration {
	data, _ := os.ReadFile(logFile)
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	out := map[string][]time.Duration{}
	for _, line := range strings.Split(string(data[offset:]), "\n") {
		kind := ""
		switch {
		case strings.Contains(line, `msg="container started"`):
			kind = "start"
		case strings.Contains(line, `msg="agent exec"`):
			kind = "exec"
		case strings.Contains(line, `msg="target connected"`):
			kind = "connected"
		default:
			continue
		}
		var name, tgt, took string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "container="); ok {
				name = v
			}
			if v, ok := strings.CutPrefix(f, "target="); ok {
				tgt = v
			}
			if v, ok := strings.CutPrefix(f, "took="); ok {
				took = v
			}
		}
		d, err := time.ParseDuration(took)
		if err != nil {
			continue
		}
		if kind == "connected" {
			out[kind+" "+tgt] = append(out[kind+" "+tgt], d)
			continue
		}
		// sshgate-TARGET-SUFFIX
		rest, ok := strings.CutPrefix(name, "sshgate-")
		if i := strings.LastIndexByte(rest, '-'); ok && i > 0 {
			out[kind+" "+rest[:i]] = append(out[kind+" "+rest[:i]], d)
		}
	}
	return out
}

func logSize(file string) int64 {
	fi, err := os.Stat(file)
	if err != nil {
		return 0
	}
	return fi.Size()
}
