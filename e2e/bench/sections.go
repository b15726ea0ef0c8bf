package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// --- throughput ---------------------------------------------------------

const (
	cipherAESGCM = "aes128-gcm@openssh.com"
	cipherChaCha = "chacha20-poly1305@openssh.com"
)

// makeSource writes size bytes of pseudo-random data (incompressible, so no
// layer can cheat) and returns its sha256.
func makeSource(path string, size int64) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var seed [32]byte
	copy(seed[:], "sshgate bench source, fixed seed")
	src := rand.NewChaCha8(seed)
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, src, size); err != nil {
		return "", err
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type xferCase struct {
	tool    string // scp or sftp
	cipher  string // "" is the client's default offer
	gate    *endpoint
	suffix  string    // after the label: what is special about the gate
	profile string    // with -profile: the file of a CPU profile of this row's gate; "": none
	base    *endpoint // -baseline: the same row through a gate of that binary; nil: none
	// baseline: this case is another's base (its profile's binary is the baseline's)
	baseline bool
}

func (c xferCase) label() string {
	switch c.cipher {
	case "":
		return c.tool + " stock default" + c.suffix
	case cipherAESGCM:
		return c.tool + " aes128-gcm" + c.suffix
	case cipherChaCha:
		return c.tool + " chacha20-poly1305" + c.suffix
	}
	return c.tool + " " + c.cipher + c.suffix
}

// transfer copies src to dst on the target with tool and returns the wall
// time of the whole client run (connection setup included).
func transfer(ctx context.Context, ep *endpoint, tool, cipher, src, dst, dir string) (time.Duration, error) {
	var cmd *exec.Cmd
	switch tool {
	case "scp":
		cmd = ep.scp(ctx, cipher, src, dst)
	case "sftp":
		batch := filepath.Join(dir, "sftp-batch")
		if err := os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s\n", src, dst)), 0o600); err != nil {
			return 0, err
		}
		cmd = ep.sftp(ctx, cipher, batch)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s via %s: %v\n%s", tool, ep.label, err, out.String())
	}
	return d, nil
}

type xferResult struct {
	direct, gate []float64 // MB/s per run
	cpuPerGiB    []float64 // gate CPU seconds per GiB per gate run
	base         []float64 // MB/s per baseline run (-baseline)
	baseCPU      []float64 // and its gate CPU seconds per GiB
	verified     []string  // paths whose copy matched the source's sha256
	negDirect    neg       // negotiated, direct
	negGate      neg       // and client -> gate
}

func runThroughput(ctx context.Context, o *opts, direct *endpoint, cases []xferCase, src, srcSum, work string) ([]xferResult, error) {
	dst := filepath.Join(work, "dst.bin")
	gib := float64(o.size) / (1 << 30)
	results := make([]xferResult, len(cases))
	verifiedTool := map[string]bool{} // tool/path already verified
	for i, c := range cases {
		r := &results[i]
		r.negDirect = direct.negotiated(ctx, c.cipher)
		r.negGate = c.gate.negotiated(ctx, c.cipher)
		for rep := 0; rep < o.repeat; rep++ {
			order := []*endpoint{direct, c.gate}
			if c.base != nil {
				order = append(order, c.base)
			}
			k := rep % len(order) // rotate: each path goes first in turn
			order = append(order[k:], order[:k]...)
			for _, ep := range order {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				os.Remove(dst)
				var cpu0 float64
				if ep.g != nil {
					cpu0 = harness.CPUSeconds(ep.g.PID())
				}
				d, err := transfer(ctx, ep, c.tool, c.cipher, src, dst, work)
				if err != nil {
					return nil, err
				}
				mbs := float64(o.size) / 1e6 / d.Seconds()
				if ep.g != nil && ep == c.base {
					cpu := harness.CPUSeconds(ep.g.PID()) - cpu0
					r.base = append(r.base, mbs)
					r.baseCPU = append(r.baseCPU, cpu/gib)
					logf("  %-26s %-6s %7.1f MB/s  gate cpu %.2f s/GiB", c.label(), ep.label, mbs, cpu/gib)
				} else if ep.g != nil {
					cpu := harness.CPUSeconds(ep.g.PID()) - cpu0
					r.gate = append(r.gate, mbs)
					r.cpuPerGiB = append(r.cpuPerGiB, cpu/gib)
					logf("  %-26s %-6s %7.1f MB/s  gate cpu %.2f s/GiB", c.label(), ep.label, mbs, cpu/gib)
				} else {
					r.direct = append(r.direct, mbs)
					logf("  %-26s %-6s %7.1f MB/s", c.label(), ep.label, mbs)
				}
				key := c.tool + "/" + ep.label
				if o.verify && !verifiedTool[key] {
					sum, err := sha256File(dst)
					if err != nil {
						return nil, err
					}
					if sum != srcSum {
						return nil, fmt.Errorf("%s via %s: sha256 of the copy %s, of the source %s", c.tool, ep.label, sum, srcSum)
					}
					verifiedTool[key] = true
					r.verified = append(r.verified, ep.label)
				}
				os.Remove(dst)
			}
		}
		if o.profile != "" && c.profile != "" {
			if err := profileTransfer(ctx, o, c, src, dst, work); err != nil {
				logf("profile: %v", err)
			}
			if c.base != nil {
				if err := profileTransfer(ctx, o, c.baseCase(), src, dst, work); err != nil {
					logf("profile: %v", err)
				}
			}
		}
	}
	return results, nil
}

// profileTransfer fetches a 10 s CPU profile of the gate while scp
// transfers (not counted in the table) run back to back through it.
func profileTransfer(ctx context.Context, o *opts, c xferCase, src, dst, work string) error {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		return err
	}
	g := c.gate.g
	out := filepath.Join(o.profile, c.profile)
	logf("  profiling the gate for 10 s during %s transfers -> %s", c.label(), out)
	done := cpuProfile(g.pprof)
	for {
		select {
		case r := <-done:
			os.Remove(dst)
			if r.err != nil {
				return r.err
			}
			if err := os.WriteFile(out, r.data, 0o644); err != nil {
				return err
			}
			// The binary beside the profile, for `go tool pprof -list` / -disasm.
			name := "sshgate"
			if c.baseline {
				name = "sshgate-baseline"
			}
			if b, err := os.ReadFile(g.bin); err == nil {
				os.WriteFile(filepath.Join(o.profile, name), b, 0o755)
			}
			return nil
		default:
		}
		os.Remove(dst)
		if _, err := transfer(ctx, c.gate, c.tool, c.cipher, src, dst, work); err != nil {
			return err
		}
	}
}

// profileResult is a CPU profile fetched from a gate's pprof endpoint.
type profileResult struct {
	data []byte
	err  error
}

// cpuProfile fetches a 10 s CPU profile from the pprof endpoint at addr; the
// result comes on the channel when it ends.
func cpuProfile(addr string) <-chan profileResult {
	done := make(chan profileResult, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=10")
		if err != nil {
			done <- profileResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("pprof: %s: %s", resp.Status, b)
		}
		done <- profileResult{b, err}
	}()
	return done
}

// profileLogins fetches a 10 s CPU profile of the gate while -clients
// loops of `ssh true` (not counted in the table) log in through ep, and
// returns the gate's CPU per login over those 10 s.
func profileLogins(ctx context.Context, o *opts, ep *endpoint, file string) (string, float64, error) {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		return "", 0, err
	}
	g := ep.g
	out := filepath.Join(o.profile, file)
	logf("  profiling the gate for 10 s during logins -> %s", out)
	done := cpuProfile(g.pprof)
	lr := runLogins(ctx, o, ep, 10*time.Second)
	r := <-done
	if r.err != nil {
		return "", 0, r.err
	}
	if err := os.WriteFile(out, r.data, 0o644); err != nil {
		return "", 0, err
	}
	if b, err := os.ReadFile(g.bin); err == nil {
		os.WriteFile(filepath.Join(o.profile, "sshgate"), b, 0o755)
	}
	perLogin := 0.0
	if lr.ok > 0 {
		perLogin = lr.gateCPU * 1000 / float64(lr.ok)
	}
	return out, perLogin, nil
}

// profileFiles are the CPU profiles -profile saves.
func profileFiles(cases []xferCase) []string {
	var f []string
	for _, c := range cases {
		if c.profile != "" {
			f = append(f, c.profile)
			if c.base != nil {
				f = append(f, c.baseCase().profile)
			}
		}
	}
	return f
}

// baseCase is c through its -baseline gate, profiled into a file of its own.
func (c xferCase) baseCase() xferCase {
	b := c
	b.gate, b.base, b.baseline = c.base, nil, true
	b.profile = strings.TrimSuffix(c.profile, ".pprof") + "-baseline.pprof"
	return b
}

// --- time to first byte -------------------------------------------------

// timeSSH runs ssh DEST remote... and returns the time to the first byte on
// stdout and to exit.
func timeSSH(ctx context.Context, ep *endpoint, remote ...string) (first, exit time.Duration, err error) {
	first, exit, err = timeCmd(ep.ssh(ctx, nil, remote...))
	if err != nil {
		err = fmt.Errorf("via %s: %w", ep.label, err)
	}
	return first, exit, err
}

type latency struct {
	direct, gate []time.Duration
	gateCPU      float64 // gate CPU seconds over all gate runs
}

func runFirstByte(ctx context.Context, o *opts, direct, gate *endpoint, remote []string, toExit bool) (latency, error) {
	var l latency
	// One warm-up each: page cache, sshd's first fork.
	timeSSH(ctx, direct, remote...)
	timeSSH(ctx, gate, remote...)
	for i := 0; i < o.runs; i++ {
		order := []*endpoint{direct, gate}
		if i%2 == 1 {
			order = []*endpoint{gate, direct}
		}
		for _, ep := range order {
			if err := ctx.Err(); err != nil {
				return l, err
			}
			var cpu0 float64
			if ep == gate {
				cpu0 = harness.CPUSeconds(ep.g.PID())
			}
			first, exit, err := timeSSH(ctx, ep, remote...)
			if err != nil {
				return l, err
			}
			d := first
			if toExit {
				d = exit
			}
			if ep == gate {
				l.gateCPU += harness.CPUSeconds(ep.g.PID()) - cpu0
				l.gate = append(l.gate, d)
			} else {
				l.direct = append(l.direct, d)
			}
		}
	}
	return l, nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	// Nearest rank.
	k := int(p*float64(len(s))+0.999999) - 1
	if k < 0 {
		k = 0
	}
	if k >= len(s) {
		k = len(s) - 1
	}
	return s[k]
}

// --- logins per second --------------------------------------------------

type loginResult struct {
	ok, failed int64
	elapsed    time.Duration
	gateCPU    float64
	firstErr   string
}

// perSecond is r's successful logins per second.
func (r loginResult) perSecond() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// cpuPerLogin is the gate's CPU per successful login for the table
// ("-" without one), with note after the figure.
func (r loginResult) cpuPerLogin(note string) string {
	if r.ok == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ms/login%s", r.gateCPU*1000/float64(r.ok), note)
}

func (r *loginResult) add(o loginResult) {
	r.ok += o.ok
	r.failed += o.failed
	r.elapsed += o.elapsed
	r.gateCPU += o.gateCPU
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
}

func runLogins(ctx context.Context, o *opts, ep *endpoint, d time.Duration) loginResult {
	var r loginResult
	var errOnce sync.Once
	var cpu0, cpuAlso0 float64
	if ep.g != nil {
		cpu0 = harness.CPUSeconds(ep.g.PID())
	}
	if ep.also != nil {
		cpuAlso0 = harness.CPUSeconds(ep.also.PID())
	}
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for w := 0; w < o.clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				cmd := ep.ssh(ctx, nil, "true")
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Run(); err != nil {
					failed.Add(1)
					errOnce.Do(func() { r.firstErr = fmt.Sprintf("%v: %s", err, bytes.TrimSpace(stderr.Bytes())) })
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.ok, r.failed = ok.Load(), failed.Load()
	if ep.g != nil {
		r.gateCPU = harness.CPUSeconds(ep.g.PID()) - cpu0
	}
	if ep.also != nil {
		r.gateCPU += harness.CPUSeconds(ep.also.PID()) - cpuAlso0
	}
	return r
}
