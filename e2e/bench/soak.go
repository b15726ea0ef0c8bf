package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/e2e/harness"
)

// --- soak ----------------------------------------------------------------

// The soak section holds -soak-sessions sessions open through one gate for
// -soak-for, half to a Docker target (a container per connection) and half
// to an sshd target, each streaming pseudo-random bytes both ways at
// -soak-rate, and samples the gate meanwhile. The CI version is e2e
// TestSoak (short sessions, 40 at once, 20 s); the sampler, the /metrics
// reader and the sha256sum check are harness's, shared with it.
//
// Each session runs soakCommand: what the bench writes to its stdin comes
// back on its stderr (tee), checked byte by byte against the same
// generator as it arrives, and when stdin closes the far end prints the
// sha256 of all it read, checked against the digest of what was sent.
const soakCommand = "tee /dev/stderr | sha256sum"

const (
	soakUp  = "up"  // the sshd target
	soakBox = "box" // the docker target, --per connection

	soakOpeners   = 8               // sessions opening at once (under the gate's 16 unauthenticated per source)
	soakOpenLimit = 3 * time.Minute // one session's dial to its first echoed byte
	soakEndLimit  = 2 * time.Minute // from closing stdin to the exit status
	soakBackLimit = 2 * time.Minute // for goroutines, fds and containers to come back after the last close
)

// soakSession is one client connection with one session running
// soakCommand.
type soakSession struct {
	target string
	seed   [32]byte

	client *ssh.Client
	sess   *ssh.Session
	stdin  io.WriteCloser
	stdout bytes.Buffer // sha256sum's line, read after Wait
	echo   *echoCheck

	sent     atomic.Int64
	sum      hash.Hash // of what was sent (the writer's)
	writeErr error     // the writer's first error (read after writerDone)

	writerDone chan struct{}
	ended      chan struct{} // Wait returned
	waitErr    error
	endedAt    time.Time
}

// echoCheck is the session's stderr: it regenerates the stream that was
// sent and counts what differs.
type echoCheck struct {
	gen        *mrand.ChaCha8
	exp        []byte
	got        atomic.Int64
	mismatched atomic.Int64
	first      chan struct{} // closed at the first byte
	once       sync.Once
}

func (e *echoCheck) Write(p []byte) (int, error) {
	e.once.Do(func() { close(e.first) })
	if cap(e.exp) < len(p) {
		e.exp = make([]byte, len(p))
	}
	exp := e.exp[:len(p)]
	e.gen.Read(exp)
	if !bytes.Equal(p, exp) {
		n := 0
		for i := range p {
			if p[i] != exp[i] {
				n++
			}
		}
		e.mismatched.Add(int64(n))
	}
	e.got.Add(int64(len(p)))
	return len(p), nil
}

// openSoak dials addr, starts soakCommand and streams chunk bytes every
// interval until stop is closed (then closes stdin); it returns once the
// first byte has come back.
func openSoak(ctx context.Context, addr string, cfg *ssh.ClientConfig, target string, chunk int, interval time.Duration, stop <-chan struct{}) (*soakSession, error) {
	s := &soakSession{target: target, sum: sha256.New(), writerDone: make(chan struct{}), ended: make(chan struct{})}
	rand.Read(s.seed[:])
	s.echo = &echoCheck{gen: mrand.NewChaCha8(s.seed), first: make(chan struct{})}
	c := *cfg
	c.User = "alice+" + target
	d := net.Dialer{Timeout: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// The handshake and the session's start must not hang the ramp.
	conn.SetDeadline(time.Now().Add(soakOpenLimit))
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &c)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("login: %w", err)
	}
	s.client = ssh.NewClient(cc, chans, reqs)
	fail := func(what string, err error) (*soakSession, error) {
		s.client.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if s.sess, err = s.client.NewSession(); err != nil {
		return fail("session", err)
	}
	if s.stdin, err = s.sess.StdinPipe(); err != nil {
		return fail("stdin", err)
	}
	s.sess.Stdout = &s.stdout
	s.sess.Stderr = s.echo
	if err := s.sess.Start(soakCommand); err != nil {
		return fail("start", err)
	}
	go func() {
		s.waitErr = s.sess.Wait()
		s.endedAt = time.Now()
		close(s.ended)
	}()
	go s.write(chunk, interval, stop)
	select {
	case <-s.echo.first:
	case <-s.ended:
		return fail("session", fmt.Errorf("ended before any echo: %v (stdout %q)", s.waitErr, s.stdout.String()))
	case <-time.After(soakOpenLimit):
		return fail("session", errors.New("no echo within "+soakOpenLimit.String()))
	case <-ctx.Done():
		return fail("session", ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	return s, nil
}

// write sends chunk pseudo-random bytes every interval until stop, then
// closes stdin.
func (s *soakSession) write(chunk int, interval time.Duration, stop <-chan struct{}) {
	defer close(s.writerDone)
	gen := mrand.NewChaCha8(s.seed)
	buf := make([]byte, chunk)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		gen.Read(buf)
		n, err := s.stdin.Write(buf)
		s.sum.Write(buf[:n])
		s.sent.Add(int64(n))
		if err != nil {
			s.writeErr = err
			return
		}
		select {
		case <-stop:
			if err := s.stdin.Close(); err != nil {
				s.writeErr = err
			}
			return
		case <-s.ended:
			return
		case <-tick.C:
		}
	}
}

// soakOutcome is what one session's end showed.
type soakOutcome struct {
	sent, echoed, mismatched int64
	digestOK                 bool
	early                    bool // ended (or failed to write) before the bench closed it
	stalled                  bool // no exit within soakEndLimit of closing stdin
	err                      string
}

// finish waits for the session's end after stop was closed and checks it.
func (s *soakSession) finish(stopAt time.Time) soakOutcome {
	var o soakOutcome
	defer s.client.Close()
	select {
	case <-s.ended:
	case <-time.After(soakEndLimit):
		o.stalled = true
		o.err = "no exit within " + soakEndLimit.String() + " of closing stdin"
		s.client.Close() // unblocks a writer stuck in Write
	}
	<-s.writerDone
	o.sent, o.echoed, o.mismatched = s.sent.Load(), s.echo.got.Load(), s.echo.mismatched.Load()
	if o.stalled {
		return o
	}
	if s.endedAt.Before(stopAt) || (s.writeErr != nil && !errors.Is(s.writeErr, io.EOF)) {
		o.early = true
		o.err = fmt.Sprintf("ended at %s, before the close (write: %v, exit: %v)", s.endedAt.Format(time.TimeOnly), s.writeErr, s.waitErr)
		return o
	}
	if s.waitErr != nil {
		o.early = true
		o.err = fmt.Sprintf("exit: %v", s.waitErr)
		return o
	}
	if err := harness.CheckSHA256Sum(s.stdout.String(), s.sum.Sum(nil)); err != nil {
		o.err = "far end: " + err.Error()
	} else {
		o.digestOK = true
	}
	return o
}

// soakResult sums the outcomes.
type soakResult struct {
	opened, openFailed                  int
	sent, echoed, mismatched, missing   int64
	digestBad, early, stalled           int
	errs                                []string
	perTarget                           map[string]int
	ramp, streamed                      time.Duration
	streamEnd                           time.Time
	cpu                                 float64 // gate CPU seconds while streaming
	base, after                         harness.GateSample
	samples                             []harness.GateSample
	warmEnd                             time.Time
	containersAfterClose, containersEnd int
	containersBackIn                    time.Duration
	sshdLeft                            int
}

func (r *soakResult) addErr(target, err string) {
	if len(r.errs) < 5 {
		r.errs = append(r.errs, target+": "+err)
	}
}

// gateIDFromLog is the gate id its log lines carry (its containers'
// sshgate.gate label), "" when the log holds none yet.
func gateIDFromLog(g *gate) string {
	data, _ := os.ReadFile(g.log)
	if _, rest, ok := strings.Cut(string(data), "gate_id="); ok {
		if f := strings.Fields(rest); len(f) > 0 {
			return f[0]
		}
	}
	return ""
}

func runSoak(ctx context.Context, o *opts, bin, tmp, key string, t *table, notes *[]string) error {
	dir := filepath.Join(tmp, "gate-soak")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	mp, err := harness.PickPort()
	if err != nil {
		return err
	}
	metrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(mp))
	cfg := filepath.Join(dir, "sshgate.yaml")
	if err := os.WriteFile(cfg, []byte("metrics:\n  listen: "+metrics+"\n"), 0o600); err != nil {
		return err
	}
	g, err := newGate(ctx, "soak", bin, dir, key+".pub", cfg)
	if err != nil {
		return fmt.Errorf("set up gate soak: %w", err)
	}
	sdir := filepath.Join(tmp, "sshd-soak")
	os.MkdirAll(sdir, 0o700)
	s, err := startSSHD(ctx, sdir, "INFO", []string{g.gateKey})
	if err != nil {
		return err
	}
	defer s.Stop(0)
	if _, err := g.admin(ctx, "target", "add", soakBox, "--env", "bench", "--docker", harness.TestImage); err != nil {
		return fmt.Errorf("set up gate soak: %w", err)
	}
	if err := g.addTarget(ctx, soakUp, s, true); err != nil {
		return fmt.Errorf("set up gate soak: %w", err)
	}
	if err := g.serve(ctx, dir, cfg); err != nil {
		return fmt.Errorf("gate soak: %w", err)
	}
	gateID := gateIDFromLog(g)
	if gateID == "" {
		return fmt.Errorf("gate soak: its docker backend is not ready:\n%s", tail(g.log, 15))
	}
	label := "sshgate.gate=" + gateID
	reg.addHook(func() { harness.RemoveLabelled(label) })
	logf("soak: gate on %s (pid %d, metrics %s, containers labelled %s), sshd on %s", g.addr, g.PID(), metrics, label, s.addr)

	xcfg, err := xClientConfig("", key, g.hostKeyPub())
	if err != nil {
		return err
	}
	chunk, interval := soakPace(o.soakRate)

	// One short session to each target first (the image's layers, the
	// first container, the gate's lazy set-up), then the baseline.
	for _, target := range []string{soakUp, soakBox} {
		stop := make(chan struct{})
		ss, err := openSoak(ctx, g.addr, xcfg, target, chunk, interval, stop)
		if err != nil {
			return fmt.Errorf("first session to %s: %w\ngate log:\n%s", target, err, tail(g.log, 15))
		}
		time.Sleep(time.Second)
		stopAt := time.Now()
		close(stop)
		if out := ss.finish(stopAt); !out.digestOK || out.mismatched != 0 || out.echoed != out.sent {
			return fmt.Errorf("first session to %s: %s (sent %d, echoed %d, %d mismatched)", target, out.err, out.sent, out.echoed, out.mismatched)
		}
	}
	if err := waitContainers(ctx, label, 0, soakBackLimit); err != nil {
		return err
	}
	time.Sleep(settle)
	var r soakResult
	if r.base, err = harness.SampleGate(g.PID(), g.data, metrics); err != nil {
		return fmt.Errorf("gate baseline: %w", err)
	}
	limits := fdLimit(g.PID())

	every := max(time.Second, min(5*time.Second, o.soakFor/60))
	sampler := harness.StartSampler(g.PID(), g.data, metrics, every)
	defer sampler.Stop()

	// Ramp: soakOpeners at a time, each waiting for its session's first
	// echo, so that container starts queue at the gate as users would.
	logf("soak: opening %d sessions (%d at a time), %s each way per session", o.soakSessions, soakOpeners, humanRate(o.soakRate))
	stop := make(chan struct{})
	var (
		mu       sync.Mutex
		sessions []*soakSession
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	r.perTarget = map[string]int{}
	rampStart := time.Now()
	for w := 0; w < soakOpeners; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= o.soakSessions || ctx.Err() != nil {
					return
				}
				target := soakUp
				if i%2 == 1 {
					target = soakBox
				}
				ss, err := openSoak(ctx, g.addr, xcfg, target, chunk, interval, stop)
				mu.Lock()
				if err != nil {
					r.openFailed++
					r.addErr(target, "open: "+err.Error())
				} else {
					sessions = append(sessions, ss)
					r.perTarget[target]++
				}
				if n := len(sessions) + r.openFailed; n%50 == 0 {
					logf("soak: %d sessions opened (%d failed) in %s", len(sessions), r.openFailed, time.Since(rampStart).Round(time.Second))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		close(stop)
		return ctx.Err()
	}
	r.opened = len(sessions)
	r.ramp = time.Since(rampStart)
	logf("soak: %d sessions open (%d to %s, %d to %s, %d failed) after %s; streaming for %s",
		r.opened, r.perTarget[soakBox], soakBox, r.perTarget[soakUp], soakUp, r.openFailed, r.ramp.Round(time.Second), o.soakFor)

	// Stream.
	streamStart := time.Now()
	r.warmEnd = streamStart.Add(o.soakFor / 5)
	cpu0 := harness.CPUSeconds(g.PID())
	progress := time.NewTicker(max(10*time.Second, o.soakFor/10))
	deadline := time.NewTimer(o.soakFor)
loop:
	for {
		select {
		case <-ctx.Done():
			close(stop)
			return ctx.Err()
		case <-deadline.C:
			break loop
		case <-progress.C:
			var sent, live int64
			for _, ss := range sessions {
				sent += ss.sent.Load()
				select {
				case <-ss.ended:
				default:
					live++
				}
			}
			last := sampler.Samples()
			rss := int64(0)
			if len(last) > 0 {
				rss = last[len(last)-1].RSSKiB
			}
			logf("soak: %s in: %d of %d sessions live, %d MiB sent, gate RSS %d MiB, load %s",
				time.Since(streamStart).Round(time.Second), live, r.opened, sent>>20, rss>>10, loadavg())
		}
	}
	progress.Stop()
	r.cpu = harness.CPUSeconds(g.PID()) - cpu0
	if o.profile != "" {
		if f, err := saveHeapProfile(g, o.profile); err != nil {
			logf("soak: heap profile: %v", err)
		} else {
			*notes = append(*notes, "soak: gate heap profile with every session open: "+f+" (go tool pprof -sample_index=inuse_space -top "+f+")")
		}
	}
	stopAt := time.Now()
	r.streamed, r.streamEnd = stopAt.Sub(streamStart), stopAt
	close(stop)
	logf("soak: closing %d sessions", r.opened)

	outs := make([]soakOutcome, len(sessions))
	for i, ss := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = ss.finish(stopAt)
		}()
	}
	wg.Wait()
	for i, out := range outs {
		r.sent += out.sent
		r.echoed += out.echoed
		r.mismatched += out.mismatched
		if out.echoed < out.sent {
			r.missing += out.sent - out.echoed
		}
		switch {
		case out.stalled:
			r.stalled++
		case out.early:
			r.early++
		case !out.digestOK:
			r.digestBad++
		}
		if out.err != "" {
			r.addErr(sessions[i].target, out.err)
		}
	}

	// After the close: goroutines and fds back to the baseline, the
	// per-connection containers gone, no sshd session left.
	closedAt := time.Now()
	harness.Eventually(soakBackLimit, func() bool {
		a, err := harness.SampleGate(g.PID(), g.data, metrics)
		if err != nil {
			return false
		}
		r.after = a
		return a.Goroutines <= r.base.Goroutines+3 && a.Leakable() <= r.base.Leakable()+2
	})
	waitContainers(ctx, label, 0, soakBackLimit)
	r.containersBackIn = time.Since(closedAt)
	list, _ := harness.DockerPS(ctx, label)
	r.containersAfterClose = len(list)
	if len(list) > 0 {
		*notes = append(*notes, "soak: containers left after the close: "+describeContainers(ctx, label))
	}
	for _, p := range harness.Descendants(s.PID()) {
		if c := harness.Comm(p); c == "sshd" || c == "sshd-session" {
			r.sshdLeft++
		}
	}
	r.samples = sampler.Stop()
	if !g.Stop(killGrace) {
		*notes = append(*notes, "soak: the gate did not exit within "+killGrace.String()+" of SIGTERM")
	}
	time.Sleep(time.Second)
	list, _ = harness.DockerPS(ctx, label)
	r.containersEnd = len(list)

	r.report(o, limits, t, notes)
	if w := logProblems(g.log); w != "" {
		*notes = append(*notes, "soak: the gate logged "+w)
	}
	return nil
}

// logProblems counts the WARN and ERROR lines of a gate log by message,
// with the first line's err of each ("" when there are none).
func logProblems(file string) string {
	data, _ := os.ReadFile(file)
	type seen struct {
		n     int
		first string
	}
	byMsg := map[string]*seen{}
	var order []string
	for _, line := range strings.Split(string(data), "\n") {
		level := ""
		for _, l := range []string{"level=ERROR", "level=WARN"} {
			if strings.Contains(line, " "+l+" ") {
				level = strings.TrimPrefix(l, "level=")
			}
		}
		if level == "" {
			continue
		}
		msg := level
		if _, rest, ok := strings.Cut(line, ` msg="`); ok {
			m, _, _ := strings.Cut(rest, `"`)
			msg += " " + strconv.Quote(m)
		}
		if byMsg[msg] == nil {
			_, e, _ := strings.Cut(line, " err=")
			byMsg[msg] = &seen{first: e}
			order = append(order, msg)
		}
		byMsg[msg].n++
	}
	var out []string
	for _, m := range order {
		v := byMsg[m]
		d := fmt.Sprintf("%d x %s", v.n, m)
		if v.first != "" {
			d += " (first: err=" + v.first + ")"
		}
		out = append(out, d)
	}
	return strings.Join(out, "; ")
}

// saveHeapProfile writes the gate's heap profile to dir/gate-heap-soak.pprof.
func saveHeapProfile(g *gate, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cl := http.Client{Timeout: time.Minute}
	resp, err := cl.Get("http://" + g.pprof + "/debug/pprof/heap")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /debug/pprof/heap: %s", resp.Status)
	}
	f := filepath.Join(dir, "gate-heap-soak.pprof")
	return f, os.WriteFile(f, b, 0o644)
}

// soakPace turns a rate (bytes per second) into a chunk written every
// interval: two chunks a second, of 4 KiB to 32 KiB (one SSH packet; more
// often past 64 KiB/s). At 4 KiB a chunk the gate spends most of its CPU per
// packet, not per byte.
func soakPace(rate int64) (chunk int, interval time.Duration) {
	chunk = int(min(max(rate/2, 4<<10), 32<<10))
	return chunk, time.Duration(float64(chunk) / float64(rate) * float64(time.Second))
}

func humanRate(rate int64) string {
	if rate%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB/s", rate>>20)
	}
	if rate%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB/s", rate>>10)
	}
	return fmt.Sprintf("%d B/s", rate)
}

// waitContainers waits until exactly n containers carry label.
func waitContainers(ctx context.Context, label string, n int, timeout time.Duration) error {
	var last int
	if harness.Eventually(timeout, func() bool {
		list, err := harness.DockerPS(ctx, label)
		last = len(list)
		return err == nil && last == n
	}) {
		return nil
	}
	return fmt.Errorf("%d containers labelled %s after %s, want %d", last, label, timeout, n)
}

// describeContainers is `docker ps -a` of the containers carrying label:
// id, state, status and name of each.
func describeContainers(ctx context.Context, label string) string {
	out, err := exec.CommandContext(ctx, "docker", "ps", "-a", "--filter", "label="+label,
		"--format", "{{.ID}} {{.State}} ({{.Status}}) {{.Names}}").Output()
	if err != nil {
		return err.Error()
	}
	return strings.Join(strings.Split(strings.TrimSpace(string(out)), "\n"), "; ")
}

// fdLimit is the "Max open files" soft limit of pid.
func fdLimit(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return f[0]
			}
		}
	}
	return "?"
}

func (r *soakResult) report(o *opts, fdLimit string, t *table, notes *[]string) {
	// The samples of the streaming past its warm-up.
	var stream []harness.GateSample
	for _, s := range r.samples {
		if !s.At.Before(r.warmEnd) && !s.At.After(r.streamEnd) {
			stream = append(stream, s)
		}
	}
	t.section(fmt.Sprintf("soak, %d sessions (%d to a container per connection, %d to sshd) for %s, each streaming %s both ways through `%s`",
		r.opened, r.perTarget[soakBox], r.perTarget[soakUp], r.streamed.Round(time.Second), humanRate(o.soakRate), soakCommand))
	gib := float64(r.sent+r.echoed) / (1 << 30)
	cpu := "-"
	if gib > 0 {
		cpu = fmt.Sprintf("%.1f s (%.2f s/GiB)", r.cpu, r.cpu/gib)
	}
	t.row("sessions opened / failed to open (ramp)", "", fmt.Sprintf("%d / %d (%s)", r.opened, r.openFailed, r.ramp.Round(time.Second)), "", "")
	t.row("bytes mismatched (echo, byte by byte; + missing)", "", fmt.Sprintf("%d + %d of %s", r.mismatched, r.missing, mib(r.echoed)), "", cpu)
	t.row("sha256 at the far end mismatched", "", fmt.Sprintf("%d of %d sessions (%s sent)", r.digestBad, r.opened, mib(r.sent)), "", "")
	t.row("unexpected disconnects / stalled at the close", "", fmt.Sprintf("%d / %d", r.early, r.stalled), "", "")
	if len(stream) > 0 {
		first, last := stream[0], stream[len(stream)-1]
		peak := harness.Peak(stream, func(s harness.GateSample) int64 { return s.RSSKiB })
		t.row("gate RSS after warm-up (MiB: first / max / last)", "",
			fmt.Sprintf("%.0f / %.0f / %.0f", kibMiB(first.RSSKiB), kibMiB(peak), kibMiB(last.RSSKiB)), "", "")
		hp := harness.Peak(stream, func(s harness.GateSample) int64 { return s.HeapInuse })
		t.row("gate heap in use after warm-up (MiB: first / max / last)", "",
			fmt.Sprintf("%.0f / %.0f / %.0f", float64(first.HeapInuse)/(1<<20), float64(hp)/(1<<20), float64(last.HeapInuse)/(1<<20)), "", "")
		*notes = append(*notes, fmt.Sprintf("soak: gate RSS sampled every %s: %d samples after the warm-up (the first fifth of the streaming, %s), RSS before the sessions %d MiB; "+
			"RSS (MiB) at each tenth of the streaming: %s",
			sampleGap(r.samples), len(stream), (o.soakFor/5).Round(time.Second), r.base.RSSKiB>>10, r.rssTenths()))
	}
	peakG := harness.Peak(r.samples, func(s harness.GateSample) int64 { return int64(s.Goroutines) })
	peakF := harness.Peak(r.samples, func(s harness.GateSample) int64 { return int64(s.FDs) })
	t.row("gate goroutines (baseline / peak / after close)", "", fmt.Sprintf("%d / %d / %d", r.base.Goroutines, peakG, r.after.Goroutines), "", "")
	t.row("gate fds (baseline / peak / after close)", "", fmt.Sprintf("%d / %d / %d", r.base.FDs, peakF, r.after.FDs), "", "")
	t.row("containers left (after close / after gate stop)", "", fmt.Sprintf("%d / %d", r.containersAfterClose, r.containersEnd), "", "")
	*notes = append(*notes,
		fmt.Sprintf("soak: after the close (goroutines, fds and containers back within %s): gate %s; baseline %s; sshd per-connection processes left: %d",
			r.containersBackIn.Round(time.Second), r.after.ProcStats, r.base.ProcStats, r.sshdLeft),
		fmt.Sprintf("soak: limits: gate open files %s (RLIMIT_NOFILE), limits.max_unauthenticated_per_source 16 (sessions open %d at a time), "+
			"authenticated connections and containers unbounded; sshd MaxStartups 100:30:200, MaxSessions 200 (one session per gate connection)",
			fdLimit, soakOpeners))
	for _, e := range r.errs {
		*notes = append(*notes, "soak: "+e)
	}
}

// rssTenths is the gate's RSS in MiB at the first sample past each tenth
// of the streaming.
func (r *soakResult) rssTenths() string {
	start := r.streamEnd.Add(-r.streamed)
	var out []string
	next := 1
	for _, s := range r.samples {
		if next <= 10 && !s.At.Before(start.Add(r.streamed*time.Duration(next)/10)) {
			out = append(out, strconv.FormatInt(s.RSSKiB>>10, 10))
			next++
		}
	}
	return strings.Join(out, ", ")
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func kibMiB(k int64) float64 { return float64(k) / 1024 }

func sampleGap(s []harness.GateSample) time.Duration {
	if len(s) < 2 {
		return 0
	}
	return (s[len(s)-1].At.Sub(s[0].At) / time.Duration(len(s)-1)).Round(100 * time.Millisecond)
}
