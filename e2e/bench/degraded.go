package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// --- degraded: one channel over a long round trip -------------------------

// degradedSize is what one channel carries per run (ssh DEST 'cat > /dev/null').
const degradedSize = 64 << 20

// xcryptoWindow is the channel window golang.org/x/crypto/ssh advertises
// and never grows: a channel through the gate carries at most this much per
// round trip of the leg it is on (OpenSSH's session window is the same).
const xcryptoWindow = 2 << 20

// runDegraded times one channel's throughput at 0, 50 and 100 ms of round
// trip between the client's side and the sshd: a delay line (25 ms each
// way per 50 ms) stands in front of a fresh sshd, the direct client goes
// through it, and so does the gate's upstream leg (client -> gate is
// loopback). aes128-gcm is forced on every leg (client -c, sshd Ciphers).
func runDegraded(ctx context.Context, o *opts, bin, tmp, key string, t *table, notes *[]string) error {
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return err
	}
	gdir := filepath.Join(tmp, "gate-degraded")
	os.MkdirAll(gdir, 0o700)
	g, err := newGate(ctx, "degraded", bin, gdir, key+".pub", "")
	if err != nil {
		return err
	}
	sdir := filepath.Join(tmp, "sshd-degraded")
	os.MkdirAll(sdir, 0o700)
	s, err := startSSHD(ctx, sdir, "INFO", []string{strings.TrimSpace(string(pub)), g.gateKey}, "Ciphers "+cipherAESGCM)
	if err != nil {
		return err
	}
	defer s.Stop(0)
	line, err := harness.StartDelayLine(s.addr, 0, harness.DefaultDelayBuffer)
	if err != nil {
		return err
	}
	defer line.Close()
	_, lp, _ := net.SplitHostPort(line.Addr)
	far := *s // the sshd as seen through the delay line
	far.addr = line.Addr
	far.port, _ = strconv.Atoi(lp)
	if err := g.addTarget(ctx, "up", &far, true); err != nil {
		return err
	}
	if err := g.serve(ctx, gdir, ""); err != nil {
		return err
	}
	defer g.Stop(killGrace)
	direct, err := directEndpoint(&far, key, tmp)
	if err != nil {
		return err
	}
	gate := gateEndpoint(g, key)
	direct.client.Opts = append(append([]string{}, benchOpts...), "Ciphers="+cipherAESGCM)
	gate.client.Opts = direct.client.Opts

	src := filepath.Join(tmp, "degraded-src.bin")
	if _, err := makeSource(src, degradedSize); err != nil {
		return err
	}
	defer os.Remove(src)
	push := func(ep *endpoint) (float64, error) {
		f, err := os.Open(src)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		cmd := ep.ssh(ctx, nil, "cat > /dev/null")
		var out bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = f, &out, &out
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("ssh cat via %s: %v\n%s", ep.label, err, out.String())
		}
		return degradedSize / 1e6 / time.Since(start).Seconds(), nil
	}

	t.section(fmt.Sprintf("degraded: one channel, %s through ssh 'cat > /dev/null', aes128-gcm on every leg, delay line before the sshd (MB/s, best of %d; last column: x/crypto cap 2 MiB per round trip)",
		humanSize(degradedSize), o.repeat))
	for _, rtt := range []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond} {
		line.SetDelay(rtt / 2)
		var d, gv []float64
		for rep := 0; rep < o.repeat; rep++ {
			order := []*endpoint{direct, gate}
			if rep%2 == 1 {
				order = []*endpoint{gate, direct}
			}
			for _, ep := range order {
				if err := ctx.Err(); err != nil {
					return err
				}
				mbs, err := push(ep)
				if err != nil {
					if ep.g != nil {
						err = fmt.Errorf("%w\ngate log:\n%s", err, tail(g.log, 15))
					}
					return err
				}
				logf("  degraded rtt %v %-6s %7.1f MB/s", rtt, ep.label, mbs)
				if ep.g != nil {
					gv = append(gv, mbs)
				} else {
					d = append(d, mbs)
				}
			}
		}
		capS := "none (no delay)"
		if rtt > 0 {
			capS = fmt.Sprintf("cap %.1f MB/s", xcryptoWindow/1e6/rtt.Seconds())
		}
		dm, gm := maxf(d), maxf(gv)
		t.row(fmt.Sprintf("ssh cat, +%d ms RTT", rtt.Milliseconds()), fmt.Sprintf("%.1f", dm), fmt.Sprintf("%.1f", gm), ratio(gm, dm), capS)
	}
	*notes = append(*notes, "degraded: the delay line is a userspace proxy on loopback (this kernel has no netem); the gate's leg to the sshd crosses it, client->gate does not; "+
		"the cap is the 2 MiB channel window of golang.org/x/crypto/ssh per round trip; OpenSSH's session window (CHAN_SES_WINDOW_DEFAULT) is the same 2 MiB, so the direct path has the same cap; "+
		"each run's time includes the connection setup (several round trips) and TCP slow start, which is why both stay under the cap")
	return nil
}
