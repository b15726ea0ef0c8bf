// Command bench compares direct OpenSSH with the same clients through
// sshgate, in one run against one upstream sshd on this machine, and prints
// a table: transfer throughput (scp, sftp; per cipher), time to first byte,
// logins per second and memory per idle session, with the gate's CPU cost;
// and for Docker targets, first byte, exit, throughput and a burst of shells
// against the same engine driven by the docker CLI; and one channel's
// throughput at 0 / 50 / 100 ms of round trip to the sshd (degraded); and,
// only when named, a soak: hundreds of streaming sessions held open through
// one gate for minutes, half to containers and half to sshd, every byte
// checked, the gate's memory, goroutines and fds sampled (soak).
//
//	go run ./e2e/bench [-size 1GiB] [-runs 30] [-only throughput,firstbyte,logins,idle,docker,kube,degraded] [-keep] [-profile DIR] [-baseline BIN]
//	go run ./e2e/bench -only soak [-soak-sessions 500] [-soak-for 10m] [-soak-rate 32KiB]
//
// It builds ./cmd/sshgate (and ./cmd/sshgate-agent beside it) without -race,
// starts /usr/sbin/sshd with its own config on a free 127.0.0.1 port and the
// gates in front of it, and stops every process and removes every container
// it started when it ends, on error or on Ctrl-C. Progress goes to stderr,
// the table to stdout. Its fixtures (builds, processes, sshd config, keys,
// clients, Docker and /proc helpers) are e2e/harness's, shared with the
// end-to-end tests.
//
// Must not import: app broker sshd/... relay target/... store/... auth/... agent cli
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

type opts struct {
	size     int64
	runs     int
	repeat   int
	only     map[string]bool
	keep     bool
	verify   bool
	profile  string
	baseline string // an sshgate binary whose gates also carry the aes128-gcm scp rows (and a kube throughput row)
	// kube section
	kubeThroughput bool // only the throughput rows
	clients        int
	loginsFor      time.Duration
	sessions       int
	// docker section
	shells     int
	shellsPool int
	// soak section
	soakSessions int
	soakFor      time.Duration
	soakRate     int64
}

var sections = []string{"throughput", "firstbyte", "logins", "idle", "docker", "kube", "degraded", "soak"}

// defaultSections run without -only: all but the soak (10 minutes and 500
// sessions by default), which runs only when named.
var defaultSections = sections[:len(sections)-1]

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func main() { os.Exit(realMain()) }

func realMain() int {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	reg.keep = o.keep

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		logf("%v: stopping every process the bench started", s)
		cancel()
		reg.cleanup()
		os.Exit(130)
	}()
	defer reg.cleanup()

	if err := bench(ctx, o); err != nil {
		if ctx.Err() != nil {
			return 130
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string) (*opts, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &opts{}
	size := fs.String("size", "1GiB", "bytes per transfer (suffixes KiB MiB GiB, KB MB GB)")
	fs.IntVar(&o.runs, "runs", 30, "runs per first-byte measure (median and p90)")
	fs.IntVar(&o.repeat, "repeat", 2, "transfers per throughput row and path (the best is shown, direct and gate alternate)")
	only := fs.String("only", strings.Join(defaultSections, ","), "comma list of sections: "+strings.Join(sections, ","))
	fs.BoolVar(&o.keep, "keep", false, "leave the temp dirs (configs, logs, data) in place")
	fs.BoolVar(&o.verify, "verify", true, "check the sha256 of one copy per tool and path")
	fs.StringVar(&o.profile, "profile", "", "save 10 s CPU profiles of the gate during scp aes128-gcm transfers and during logins (kex curve25519) in this directory")
	fs.StringVar(&o.baseline, "baseline", "", "an sshgate binary (e.g. built from main) whose gates also carry the scp aes128-gcm rows, run by run with this tree's, and the idle sessions")
	fs.BoolVar(&o.kubeThroughput, "kube-throughput", false, "kube section: only the throughput rows (with -baseline, a gate of that binary too, with the sshgate-agent beside it if any)")
	fs.IntVar(&o.clients, "clients", 8, "parallel clients for the logins section")
	fs.DurationVar(&o.loginsFor, "logins-for", 10*time.Second, "duration of the logins section per path")
	fs.IntVar(&o.sessions, "sessions", 100, "idle sessions for the memory section")
	fs.IntVar(&o.shells, "shells", 50, "PTY shells opened at once through the gate (docker section)")
	fs.IntVar(&o.shellsPool, "shells-pool", 10, "--pool of the target those shells open (docker section)")
	fs.IntVar(&o.soakSessions, "soak-sessions", 500, "sessions held open at once in the soak section, half to a container, half to sshd")
	fs.DurationVar(&o.soakFor, "soak-for", 10*time.Minute, "how long the soak section streams once every session is open")
	soakRate := fs.String("soak-rate", "32KiB", "bytes per second each soak session streams each way")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	n, err := parseSize(*size)
	if err != nil {
		return nil, fmt.Errorf("-size: %v", err)
	}
	o.size = n
	if o.soakRate, err = parseSize(*soakRate); err != nil {
		return nil, fmt.Errorf("-soak-rate: %v", err)
	}
	if o.soakSessions < 2 || o.soakFor < 10*time.Second {
		return nil, fmt.Errorf("-soak-sessions must be at least 2 and -soak-for at least 10s (got %d and %s)", o.soakSessions, o.soakFor)
	}
	if o.baseline != "" {
		fi, err := os.Stat(o.baseline)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("-baseline: %q is not an executable file", o.baseline)
		}
		if o.baseline, err = filepath.Abs(o.baseline); err != nil {
			return nil, fmt.Errorf("-baseline: %v", err)
		}
	}
	o.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		ok := false
		for _, k := range sections {
			ok = ok || k == s
		}
		if !ok {
			return nil, fmt.Errorf("-only: unknown section %q (want %s)", s, strings.Join(sections, ","))
		}
		o.only[s] = true
	}
	if len(o.only) == 0 {
		return nil, fmt.Errorf("-only: no section")
	}
	if o.runs < 1 || o.repeat < 1 || o.clients < 1 || o.sessions < 1 || o.shells < 1 || o.shellsPool < 1 {
		return nil, fmt.Errorf("-runs, -repeat, -clients, -sessions, -shells and -shells-pool must be at least 1")
	}
	if o.profile != "" {
		if o.profile, err = filepath.Abs(o.profile); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || f <= 0 {
				return 0, fmt.Errorf("%q is not a size", s)
			}
			return int64(f * float64(u.mult)), nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 1GiB, 256MiB)", s)
	}
	return n, nil
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// ciphersConfig is the gate configuration of the throughput rows that name
// a cipher: the default offer plus chacha20-poly1305.
const ciphersConfig = `ssh:
  ciphers: [aes128-gcm@openssh.com, aes256-gcm@openssh.com, chacha20-poly1305@openssh.com, aes128-ctr, aes256-ctr]
`

// noHashConfig is the ciphers gate without the audit's file digests, for the
// row that shows what the sha256 of every file costs.
const noHashConfig = ciphersConfig + `audit:
  file_hash: none
`

func bench(ctx context.Context, o *opts) error {
	// Every section but docker runs against an upstream sshd.
	needSSHD := o.only["throughput"] || o.only["firstbyte"] || o.only["logins"] || o.only["idle"]
	tools := []string{"ssh", "ssh-keygen"}
	if needSSHD || o.only["degraded"] || o.only["soak"] {
		tools = append(tools, "/usr/sbin/sshd", "scp", "sftp")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: the bench needs OpenSSH's client and server", tool)
		}
	}
	var notes []string
	var engine string
	if o.only["docker"] {
		var why string
		if engine, why = harness.DockerReady(ctx); why != "" {
			if !needSSHD {
				return fmt.Errorf("docker section: %s", why)
			}
			logf("skipping the docker section: %s", why)
			notes = append(notes, "docker section skipped: "+why)
			delete(o.only, "docker")
		}
	}
	if o.only["soak"] {
		if _, why := harness.DockerReady(ctx); why != "" {
			if !needSSHD && len(o.only) == 1 {
				return fmt.Errorf("soak section: %s", why)
			}
			logf("skipping the soak section: %s", why)
			notes = append(notes, "soak section skipped: "+why)
			delete(o.only, "soak")
		}
	}
	var kubeState, kubectl string
	if o.only["kube"] {
		var why string
		if kubeState, kubectl, why = kubeReady(ctx); why == "" {
			if _, dwhy := harness.DockerReady(ctx); dwhy != "" {
				why = "the agent image is built with docker: " + dwhy
			}
		}
		if why != "" {
			if !needSSHD && !o.only["docker"] {
				return fmt.Errorf("kube section: %s", why)
			}
			logf("skipping the kube section: %s", why)
			notes = append(notes, "kube section skipped: "+why)
			delete(o.only, "kube")
		}
	}
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "sshgate-bench-")
	if err != nil {
		return err
	}
	reg.addDir(tmp)
	work := tmp
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() && (o.only["throughput"] || o.only["docker"] || o.only["kube"]) {
		if d, err := os.MkdirTemp("/dev/shm", "sshgate-bench-"); err == nil {
			work = d
			reg.addDir(d)
		}
	}

	facts := machineFacts(root)
	logf("building ./cmd/sshgate (no -race)")
	bin := filepath.Join(tmp, "sshgate")
	if err := harness.Build(ctx, bin, "./cmd/sshgate", false); err != nil {
		return err
	}
	if o.only["docker"] || o.only["kube"] || o.only["soak"] {
		// Beside the gate, where it looks for the agent of Docker targets.
		logf("building ./cmd/sshgate-agent (static, no -race)")
		if err := harness.Build(ctx, filepath.Join(tmp, "sshgate-agent"), "./cmd/sshgate-agent", false); err != nil {
			return err
		}
	}
	key, _, err := harness.KeygenFile(tmp, "id_bench")
	if err != nil {
		return err
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return err
	}

	// Gates: "ciphers" (the named-cipher throughput rows), "default" (what a
	// stock client gets: the stock rows, first byte, logins) and a fresh
	// default one for the memory section, so that earlier transfers do not
	// leave a grown heap behind the baseline.
	type gateSpec struct {
		name, config string
		need         bool
		bin          string // "": this tree's build
	}
	// "postgres": the default gate on a PostgreSQL store (the test server of
	// scripts/test-setup.sh), for the logins section.
	pgConfig := ""
	if o.only["logins"] {
		cfg, cleanup, err := pgStoreConfig(ctx, tmp)
		if err != nil {
			logf("logins on a postgres store skipped: %v", err)
			notes = append(notes, "logins on a postgres store skipped: "+err.Error())
		} else {
			defer cleanup()
			pgConfig = cfg
		}
	}
	// The postgres gate also stands behind HAProxy with a second gate on
	// the same store (the "2 gates" row): PROXY protocol and /readyz on.
	pgGateConfig, pgMetrics := pgConfig, ""
	if pgConfig != "" {
		mp, err := harness.PickPort()
		if err != nil {
			return err
		}
		pgMetrics = net.JoinHostPort("127.0.0.1", strconv.Itoa(mp))
		pgGateConfig = pgConfig + lbProxyConfig(pgMetrics)
	}
	specs := []gateSpec{
		{"ciphers", ciphersConfig, o.only["throughput"], ""},
		{"nohash", noHashConfig, o.only["throughput"], ""},
		// -baseline: the same two configurations on the other binary.
		{"ciphers-base", ciphersConfig, o.only["throughput"] && o.baseline != "", o.baseline},
		{"nohash-base", noHashConfig, o.only["throughput"] && o.baseline != "", o.baseline},
		{"default", "", o.only["throughput"] || o.only["firstbyte"] || o.only["logins"], ""},
		{"idle", "", o.only["idle"], ""},
		{"idle-base", "", o.only["idle"] && o.baseline != "", o.baseline},
		{"postgres", pgGateConfig, pgConfig != "", ""},
		// "ca": a default gate after `ca init`, whose login certificates the
		// sshd does not trust (it takes the gate key), for the logins section.
		{"ca", "", o.only["logins"], ""},
	}
	gates := map[string]*gate{}
	authorized := []string{strings.TrimSpace(string(pub))}
	for _, sp := range specs {
		if !sp.need {
			continue
		}
		dir := filepath.Join(tmp, "gate-"+sp.name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		cfg := ""
		if sp.config != "" {
			cfg = filepath.Join(dir, "sshgate.yaml")
			if err := os.WriteFile(cfg, []byte(sp.config), 0o600); err != nil {
				return err
			}
		}
		gbin := bin
		if sp.bin != "" {
			gbin = sp.bin
		}
		g, err := newGate(ctx, sp.name, gbin, dir, key+".pub", cfg)
		if err != nil {
			return fmt.Errorf("set up gate %s: %w", sp.name, err)
		}
		if sp.name == "ca" {
			if _, err := g.admin(ctx, "ca", "init"); err != nil {
				return fmt.Errorf("set up gate %s: %w", sp.name, err)
			}
		}
		gates[sp.name] = g
		authorized = append(authorized, g.gateKey)
	}
	var t table
	var s *sshd
	var direct *endpoint
	var lbPair *pair // two postgres gates behind HAProxy (nil: not measured)
	if needSSHD {
		sdir := filepath.Join(tmp, "sshd")
		os.MkdirAll(sdir, 0o700)
		s, err = startSSHD(ctx, sdir, "INFO", authorized)
		if err != nil {
			return err
		}
		logf("sshd on %s", s.addr)
		for _, sp := range specs {
			g := gates[sp.name]
			if g == nil {
				continue
			}
			dir := filepath.Join(tmp, "gate-"+sp.name)
			if err := g.addTarget(ctx, "up", s, true); err != nil {
				return fmt.Errorf("set up gate %s: %w", sp.name, err)
			}
			if err := g.serve(ctx, dir, g.config); err != nil {
				return fmt.Errorf("gate %s: %w", sp.name, err)
			}
			logf("gate %s on %s (pid %d, pprof %s)", sp.name, g.addr, g.PID(), g.pprof)
		}
		direct, err = directEndpoint(s, key, tmp)
		if err != nil {
			return err
		}
		// A first login on each path, so that a setup mistake fails here.
		check := []*endpoint{direct}
		for _, sp := range specs {
			if g := gates[sp.name]; g != nil {
				check = append(check, gateEndpoint(g, key))
			}
		}
		for _, ep := range check {
			if _, _, err := timeSSH(ctx, ep, "true"); err != nil {
				name := "direct"
				if ep.g != nil {
					name = "gate " + ep.g.name
					err = fmt.Errorf("%w\ngate log:\n%s", err, tail(ep.g.log, 15))
				}
				return fmt.Errorf("first login (%s): %w", name, err)
			}
		}

		if pg := gates["postgres"]; pg != nil && o.only["logins"] {
			if pr, err := startPair(ctx, pg, pgMetrics, pgConfig, tmp); err != nil {
				logf("two gates behind HAProxy skipped: %v", err)
				notes = append(notes, "logins: two gates behind HAProxy skipped: "+err.Error())
			} else if _, _, err := timeSSH(ctx, pr.endpoint(key), "true"); err != nil {
				return fmt.Errorf("first login through HAProxy: %w", err)
			} else {
				lbPair = pr
				logf("gate postgres-b on %s, haproxy on 127.0.0.1:%d", pr.b.addr, pr.port)
			}
		}

		// What each hop negotiates when nothing is forced.
		{
			var g *gate
			for _, name := range []string{"default", "idle"} {
				if g == nil {
					g = gates[name]
				}
			}
			if g == nil {
				g = gates["ciphers"]
			}
			leg, err := probeGateLeg(ctx, g, filepath.Join(tmp, "sshd-probe"), key)
			if err != nil {
				logf("probe of the gate->sshd leg: %v", err)
			}
			notes = append(notes, fmt.Sprintf("handshakes with stock settings: client->sshd %s; client->gate %s; gate->sshd %s",
				direct.negotiated(ctx, ""), gateEndpoint(g, key).negotiated(ctx, ""), leg))
		}
	}
	loadStart := loadavg()

	if o.only["throughput"] {
		src := filepath.Join(work, "src.bin")
		logf("writing a %s source file in %s", humanSize(o.size), work)
		sum, err := makeSource(src, o.size)
		if err != nil {
			return err
		}
		gc := gateEndpoint(gates["ciphers"], key)
		gd := gateEndpoint(gates["default"], key)
		gn := gateEndpoint(gates["nohash"], key)
		var bc, bn *endpoint // -baseline
		if o.baseline != "" {
			bc, bn = gateEndpoint(gates["ciphers-base"], key), gateEndpoint(gates["nohash-base"], key)
			bc.label, bn.label = "base", "base"
		}
		var cases []xferCase
		for _, tool := range []string{"scp", "sftp"} {
			cases = append(cases, xferCase{tool: tool, cipher: cipherAESGCM, gate: gc})
			if tool == "scp" {
				cases[len(cases)-1].profile = "gate-cpu-scp-aes128gcm.pprof"
				cases[len(cases)-1].base = bc
				cases = append(cases, xferCase{tool: tool, cipher: cipherAESGCM, gate: gn, suffix: ", file_hash: none",
					profile: "gate-cpu-scp-aes128gcm-nohash.pprof", base: bn})
			}
			cases = append(cases,
				xferCase{tool: tool, cipher: cipherChaCha, gate: gc},
				xferCase{tool: tool, gate: gd},
			)
		}
		logf("throughput: %d rows x %d runs x 2 paths", len(cases), o.repeat)
		res, err := runThroughput(ctx, o, direct, cases, src, sum, work)
		os.Remove(src)
		if err != nil {
			return err
		}
		t.section(fmt.Sprintf("throughput, %s put (MB/s, best of %d; gate CPU: s per GiB, mean and min)", humanSize(o.size), o.repeat))
		var verified []string
		for i, c := range cases {
			r := res[i]
			d, g := maxf(r.direct), maxf(r.gate)
			t.row(c.label(), fmt.Sprintf("%.0f", d), fmt.Sprintf("%.0f", g), ratio(g, d), fmt.Sprintf("%.2f s/GiB (min %.2f)", meanf(r.cpuPerGiB), minf(r.cpuPerGiB)))
			if c.base != nil {
				b := maxf(r.base)
				t.row(c.label()+" [baseline]", fmt.Sprintf("%.0f", d), fmt.Sprintf("%.0f", b), ratio(b, d), fmt.Sprintf("%.2f s/GiB (min %.2f)", meanf(r.baseCPU), minf(r.baseCPU)))
			}
			if c.cipher == "" {
				notes = append(notes, fmt.Sprintf("%s: direct gets %s; client->default gate %s", c.label(), r.negDirect.cipher, r.negGate.cipher))
			} else if r.negDirect.cipher != c.cipher || r.negGate.cipher != c.cipher {
				notes = append(notes, fmt.Sprintf("%s: negotiated direct %s, client->gate %s", c.label(), r.negDirect.cipher, r.negGate.cipher))
			}
			for _, v := range r.verified {
				verified = append(verified, c.tool+" "+v)
			}
		}
		notes = append(notes, "named-cipher rows go through a gate configured to offer chacha20-poly1305 too, stock rows through a default gate; "+
			"the file_hash: none row through the same configuration with audit.file_hash: none (no sha256 of files)")
		if o.baseline != "" {
			notes = append(notes, "[baseline] rows: the same configurations on gates of "+o.baseline+
				", in the same runs as the row above (direct, gate and baseline in turn, the order rotating run by run)")
		}
		if len(verified) > 0 {
			notes = append(notes, "sha256 of the copy matched the source: "+strings.Join(verified, ", "))
		}
		if o.profile != "" {
			for _, f := range profileFiles(cases) {
				p := filepath.Join(o.profile, f)
				notes = append(notes, "gate CPU profile: "+p+" (go tool pprof -top "+p+")")
			}
		}
	}

	// The stock rows let each hop negotiate, so the direct path pays
	// OpenSSH's default kex (sntrup761x25519) where the gate's hops use
	// curve25519; the "kex curve25519" rows force it on both paths, so that
	// the difference left is the gate's own.
	const kexLabel = ", kex curve25519"
	const kexForced = "curve25519-sha256"
	if o.only["firstbyte"] {
		gd := gateEndpoint(gates["default"], key)
		t.section(fmt.Sprintf("time to first byte, %d runs each (ms, median / p90; gate CPU per connection)", o.runs))
		for _, m := range []struct {
			label        string
			remote       []string
			exit, forced bool
		}{
			{"ssh true (to exit)", []string{"true"}, true, false},
			{"ssh echo hi (first byte)", []string{"echo", "hi"}, false, false},
			{"ssh true (to exit)" + kexLabel, []string{"true"}, true, true},
		} {
			logf("first byte: %s", m.label)
			d, g := direct, gd
			if m.forced {
				d, g = direct.withKex(kexForced), gd.withKex(kexForced)
			}
			l, err := runFirstByte(ctx, o, d, g, m.remote, m.exit)
			if err != nil {
				return err
			}
			dm, gm := percentile(l.direct, 0.5), percentile(l.gate, 0.5)
			t.row(m.label,
				fmt.Sprintf("%s / %s", ms(dm), ms(percentile(l.direct, 0.9))),
				fmt.Sprintf("%s / %s", ms(gm), ms(percentile(l.gate, 0.9))),
				ratio(gm.Seconds(), dm.Seconds()),
				fmt.Sprintf("%.1f ms/conn", l.gateCPU*1000/float64(len(l.gate))))
		}
		// ssh -J through the gate against alice+up through the same gate:
		// the inner handshake is the extra cost.
		logf("first byte: ssh -J")
		jd, err := jumpEndpoint(ctx, gates["default"], key, tmp)
		if err != nil {
			return err
		}
		l, err := runFirstByte(ctx, o, gd, jd, []string{"echo", "hi"}, false)
		if err != nil {
			return err
		}
		am, jm := percentile(l.direct, 0.5), percentile(l.gate, 0.5)
		t.row("ssh -J gate root@up echo hi; \"direct\" column: alice+up through the same gate",
			fmt.Sprintf("%s / %s", ms(am), ms(percentile(l.direct, 0.9))),
			fmt.Sprintf("%s / %s", ms(jm), ms(percentile(l.gate, 0.9))),
			ratio(jm.Seconds(), am.Seconds()),
			fmt.Sprintf("%.1f ms/conn", l.gateCPU*1000/float64(len(l.gate))))
		notes = append(notes, "first byte: aim for ssh -J, within 1.3x of alice+up (the inner handshake is the extra cost)")
	}

	if o.only["logins"] {
		gd := gateEndpoint(gates["default"], key)
		t.section(fmt.Sprintf("logins, %d parallel clients looping `ssh true`, %s per path in 2 alternating rounds (logins/s; gate CPU per login)", o.clients, o.loginsFor))
		for _, forced := range []bool{false, true} {
			d, g, label := direct, gd, "logins per second"
			if forced {
				d, g, label = direct.withKex(kexForced), gd.withKex(kexForced), label+kexLabel
			}
			// Two rounds of half the time each, direct and gate alternating,
			// so that a burst of load elsewhere on the machine hits both.
			var rd, rg, rp, r2 loginResult
			var rc loginResult
			var gp, g2, gc *endpoint // the postgres-store gate and the pair behind HAProxy, on the unforced row; the CA gate on the forced one
			if ca := gates["ca"]; ca != nil && forced {
				gc = gateEndpoint(ca, key).withKex(kexForced)
			}
			if pg := gates["postgres"]; pg != nil && !forced {
				gp = gateEndpoint(pg, key)
			}
			if lbPair != nil && !forced {
				g2 = lbPair.endpoint(key)
			}
			for round, first := range []bool{true, false} {
				for _, directNow := range []bool{first, !first} {
					ep, acc, path := g, &rg, "gate"
					if directNow {
						ep, acc, path = d, &rd, "direct"
					}
					logf("logins: %s, %s, round %d", label, path, round+1)
					acc.add(runLogins(ctx, o, ep, o.loginsFor/2))
				}
				if gp != nil {
					logf("logins: %s, gate on postgres, round %d", label, round+1)
					rp.add(runLogins(ctx, o, gp, o.loginsFor/2))
				}
				if g2 != nil {
					logf("logins: %s, 2 gates behind haproxy, round %d", label, round+1)
					r2.add(runLogins(ctx, o, g2, o.loginsFor/2))
				}
				if gc != nil {
					logf("logins: %s, gate with a CA the sshd does not trust, round %d", label, round+1)
					rc.add(runLogins(ctx, o, gc, o.loginsFor/2))
				}
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			dps, gps := float64(rd.ok)/rd.elapsed.Seconds(), rg.perSecond()
			t.row(label, fmt.Sprintf("%.1f", dps), fmt.Sprintf("%.1f", gps), ratio(gps, dps), rg.cpuPerLogin(""))
			if gp != nil {
				pps := rp.perSecond()
				t.row(label+", store: postgres", fmt.Sprintf("%.1f", dps), fmt.Sprintf("%.1f", pps), ratio(pps, dps), rp.cpuPerLogin(""))
				notes = append(notes, fmt.Sprintf("logins: the gate on PostgreSQL (same machine, loopback) does %.1f/s, %s of the gate on SQLite", pps, ratio(pps, gps)))
				if g2 != nil {
					tps := r2.perSecond()
					t.row(label+", 2 gates behind haproxy, store: postgres", fmt.Sprintf("%.1f", dps), fmt.Sprintf("%.1f", tps), ratio(tps, dps), r2.cpuPerLogin(" (both)"))
					notes = append(notes, fmt.Sprintf("logins: two gates behind HAProxy (PROXY v2) on one PostgreSQL do %.1f/s, %s of one gate on PostgreSQL; "+
						"the %d clients, sshd, HAProxy, PostgreSQL and both gates share this machine's %d CPUs, so the machine is the limit (load average now %s)",
						tps, ratio(tps, pps), o.clients, runtime.NumCPU(), loadavg()))
				}
			}
			if gc != nil {
				cps := rc.perSecond()
				t.row(label+", gate with a CA the sshd does not trust", fmt.Sprintf("%.1f", dps), fmt.Sprintf("%.1f", cps), ratio(cps, dps), rc.cpuPerLogin(""))
			}
			if forced && o.profile != "" {
				if p, ms, err := profileLogins(ctx, o, g, "gate-cpu-logins.pprof"); err != nil {
					logf("profile: %v", err)
				} else {
					notes = append(notes, fmt.Sprintf("gate CPU profile of 10 s of logins%s (%.1f ms/login then): %s (go tool pprof -top %s)", kexLabel, ms, p, p))
				}
			}
			for _, r := range []struct {
				path string
				res  loginResult
			}{{"direct", rd}, {"gate", rg}, {"gate on postgres", rp}, {"2 gates behind haproxy", r2}, {"gate with a CA", rc}} {
				if r.res.failed > 0 {
					notes = append(notes, fmt.Sprintf("%s %s: %d of %d failed; first: %s", label, r.path, r.res.failed, r.res.failed+r.res.ok, r.res.firstErr))
				}
			}
		}
	}

	if o.only["idle"] {
		logf("idle: %d sessions direct, then through a fresh gate", o.sessions)
		r, err := runIdle(ctx, o, s, gates["idle"], gates["idle-base"], key)
		if err != nil {
			return err
		}
		t.section(fmt.Sprintf("idle sessions, %d connections each running `sleep 600` (KiB per session)", r.n))
		rows := []struct {
			label string
			g     *idleGate
		}{{"", &r.gate}, {" [baseline]", r.base}}
		for _, row := range rows {
			if row.g == nil {
				continue
			}
			g := row.g
			t.row("memory per session"+row.label, fmt.Sprintf("%.0f (sshd PSS)", r.sshdKiB), fmt.Sprintf("%.0f (gate RSS)", g.kiB), ratio(g.kiB, r.sshdKiB), "")
			if g.heapKiB >= 0 {
				t.row("gate heap + stacks per session"+row.label, "", fmt.Sprintf("%.0f + %.0f", g.heapKiB, g.stackKiB), "", "")
			}
			if g.gorBefore >= 0 && g.gorWith >= 0 {
				t.row("gate goroutines per session"+row.label, "", fmt.Sprintf("%.1f", float64(g.gorWith-g.gorBefore)/float64(r.n)), "", "")
			}
			notes = append(notes, fmt.Sprintf("idle%s: gate VmRSS %d KiB before, %d KiB with %d sessions", row.label, g.before, g.with, r.n))
		}
		notes = append(notes, fmt.Sprintf("idle: sshd: PSS of its %d per-connection processes (direct sessions); gate heap: live heap after a collection (pprof HeapAlloc), stacks: goroutine stack spans in use", r.sshdProcs))
		if r.base != nil {
			notes = append(notes, "idle [baseline] rows: the same sessions through a fresh default gate of "+o.baseline+", right after this tree's")
		}
	}

	if o.only["docker"] {
		logf("docker: a gate with Docker targets on image %s", harness.TestImage)
		if err := runDocker(ctx, o, bin, tmp, work, key, engine, &t, &notes); err != nil {
			return fmt.Errorf("docker section: %w", err)
		}
	}

	if o.only["kube"] {
		logf("kube: a gate with Kubernetes targets on image %s", harness.TestImage)
		if err := runKube(ctx, o, bin, tmp, work, key, kubeState, kubectl, &t, &notes); err != nil {
			return fmt.Errorf("kube section: %w", err)
		}
	}

	if o.only["degraded"] {
		logf("degraded: one channel at 0 / 50 / 100 ms of round trip, direct and through a gate")
		if err := runDegraded(ctx, o, bin, tmp, key, &t, &notes); err != nil {
			return fmt.Errorf("degraded section: %w", err)
		}
	}

	if o.only["soak"] {
		logf("soak: %d sessions for %s", o.soakSessions, o.soakFor)
		if err := runSoak(ctx, o, bin, tmp, key, &t, &notes); err != nil {
			return fmt.Errorf("soak section: %w", err)
		}
	}

	facts = append(facts, "load average at start / end: "+loadStart+" / "+loadavg())
	for _, f := range facts {
		fmt.Println(f)
	}
	fmt.Println()
	t.print()
	if len(notes) > 0 {
		fmt.Println()
		for _, n := range notes {
			fmt.Println("- " + n)
		}
	}
	return nil
}

// machineFacts are printed above the table.
func machineFacts(root string) []string {
	var f []string
	cpu := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	f = append(f, fmt.Sprintf("machine: %d CPUs (nproc), %s, Linux %s", runtime.NumCPU(), cpu, strings.TrimSpace(string(kernel))))
	sshV, _ := exec.Command("ssh", "-V").CombinedOutput()
	f = append(f, "openssh: "+strings.TrimSpace(string(sshV))+" (client and /usr/sbin/sshd)")
	goV, err := exec.Command(harness.GoTool(), "version").Output()
	if err != nil {
		goV = []byte(runtime.Version())
	}
	f = append(f, "go: "+strings.TrimSpace(string(goV)))
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	if rev, err := cmd.Output(); err == nil {
		f = append(f, "sshgate: "+strings.TrimSpace(string(rev))+" (built without -race, CGO_ENABLED=0)")
	}
	return f
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	fl := strings.Fields(string(data))
	if len(fl) < 3 {
		return "?"
	}
	return strings.Join(fl[:3], " ")
}

// table collects rows for text/tabwriter.
type table struct{ lines [][]string }

func (t *table) section(title string) { t.lines = append(t.lines, []string{"## " + title}) }

func (t *table) row(cells ...string) { t.lines = append(t.lines, cells) }

func (t *table) print() {
	// Section titles are placeholder rows inside the tabwriter (so that one
	// column block spans the whole table), replaced by the title afterwards.
	var buf strings.Builder
	w := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "measure\tdirect\tgate\tratio\tgate CPU")
	fmt.Fprintln(w, "-------\t------\t----\t-----\t--------")
	var titles []string
	for _, l := range t.lines {
		if len(l) == 1 {
			fmt.Fprintf(w, "\x00%d\t\t\t\t\n", len(titles))
			titles = append(titles, l[0])
			continue
		}
		fmt.Fprintln(w, strings.Join(l, "\t"))
	}
	w.Flush()
	for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		if rest, ok := strings.CutPrefix(line, "\x00"); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			line = titles[n]
		}
		fmt.Println(strings.TrimRight(line, " "))
	}
}

func ratio(gate, direct float64) string {
	if direct <= 0 || gate <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", gate/direct)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func maxf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		if x > m {
			m = x
		}
	}
	return m
}

func minf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	m := v[0]
	for _, x := range v[1:] {
		m = min(m, x)
	}
	return m
}

func meanf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
