package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// sshd is the upstream OpenSSH server both paths end at.
type sshd struct {
	*server
	addr, host string
	port       int
	hostKeyPub string
	authKeys   string
}

func startSSHD(ctx context.Context, dir, logLevel string, authorized []string, extra ...string) (*sshd, error) {
	os.MkdirAll("/run/sshd", 0o755)
	hk, _, err := harness.KeygenFile(dir, "ssh_host_ed25519_key")
	if err != nil {
		return nil, err
	}
	s := &sshd{host: "127.0.0.1", hostKeyPub: hk + ".pub", authKeys: filepath.Join(dir, "authorized_keys")}
	if err := os.WriteFile(s.authKeys, []byte(strings.Join(authorized, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		if s.port, err = harness.PickPort(); err != nil {
			return nil, err
		}
		s.addr = net.JoinHostPort(s.host, strconv.Itoa(s.port))
		cfg := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(cfg, []byte(harness.SSHDConfig(s.host, s.port, hk, s.authKeys, logLevel, extra...)), 0o600); err != nil {
			return nil, err
		}
		srv, err := startServer("sshd", filepath.Join(dir, "sshd.log"), os.Environ(), "/usr/sbin/sshd", "-D", "-e", "-f", cfg)
		if err != nil {
			return nil, err
		}
		if last = srv.waitBanner(s.addr, 20*time.Second); last == nil {
			s.server = srv
			return s, nil
		}
		srv.Stop(0)
	}
	return nil, last
}

// sessionPSS sums the proportional set size of the sshd processes serving
// connections (not the listener, not the commands they run).
func (s *sshd) sessionPSS() (kib int64, procs int) {
	for _, p := range harness.Descendants(s.PID()) {
		if c := harness.Comm(p); c == "sshd" || c == "sshd-session" {
			kib += harness.PSSKiB(p)
			procs++
		}
	}
	return kib, procs
}

// gate is a running `sshgate serve` set up with one user (alice, the bench
// key) granted the target "up" (the bench sshd, login root).
type gate struct {
	*server
	name       string
	bin        string
	data       string
	host       string
	port       int
	addr       string
	pprof      string // host:port of net/http/pprof
	knownHosts string
	gateKey    string // authorized_keys line the gate logs in to targets with
	config     string // --config of serve and the admin commands ("" for none)
}

// newGate prepares a data directory (user, key, env, target, grant) and
// returns the gate's key, to be authorised at sshd before the gate serves.
func newGate(ctx context.Context, name, bin, dir, clientPub, config string) (*gate, error) {
	g := &gate{name: name, bin: bin, data: filepath.Join(dir, "data"), host: "127.0.0.1", config: config}
	if _, err := g.admin(ctx, "init"); err != nil { // only serve and init create a data directory
		return nil, err
	}
	out, err := g.admin(ctx, "gate-key")
	if err != nil {
		return nil, err
	}
	g.gateKey = strings.TrimSpace(out)
	if _, err := g.admin(ctx, "user", "add", "alice"); err != nil {
		return nil, err
	}
	if _, err := g.admin(ctx, "key", "add", "alice", clientPub); err != nil {
		return nil, err
	}
	if _, err := g.admin(ctx, "env", "add", "bench"); err != nil {
		return nil, err
	}
	return g, nil
}

// addTarget registers the sshd as target name; grant also grants alice the
// env (and so every target in it).
func (g *gate) addTarget(ctx context.Context, name string, s *sshd, grant bool) error {
	if _, err := g.admin(ctx, "target", "add", name, "--env", "bench", "--upstream", s.addr, "--login", "root", "--host-key", s.hostKeyPub); err != nil {
		return err
	}
	if !grant {
		return nil
	}
	_, err := g.admin(ctx, "grant", "alice", "--env", "bench")
	return err
}

// probeGateLeg reports what the gate and an sshd agree on: a second sshd at
// LogLevel DEBUG1 (which logs the kex) is added as target "probe" and
// reached once through the gate.
func probeGateLeg(ctx context.Context, g *gate, dir, key string) (neg, error) {
	os.MkdirAll(dir, 0o700)
	p, err := startSSHD(ctx, dir, "DEBUG1", []string{g.gateKey})
	if err != nil {
		return neg{}, err
	}
	defer p.Stop(0)
	if err := g.addTarget(ctx, "probe", p, false); err != nil {
		return neg{}, err
	}
	ep := gateEndpoint(g, key)
	ep.login = "alice+probe"
	if _, _, err := timeSSH(ctx, ep, "true"); err != nil {
		return neg{}, err
	}
	data, err := os.ReadFile(p.log)
	if err != nil {
		return neg{}, err
	}
	return parseNeg(string(data)), nil
}

func (g *gate) admin(ctx context.Context, args ...string) (string, error) {
	args = append(args, "--data", g.data)
	if g.config != "" {
		args = append(args, "--config", g.config)
	}
	return run(ctx, nil, append([]string{g.bin}, args...)...)
}

// serve starts the gate, with config file cfg when not empty, and pprof on
// a loopback port.
func (g *gate) serve(ctx context.Context, dir, cfg string) error {
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := harness.PickPort()
		if err != nil {
			return err
		}
		pp, err := harness.PickPort()
		if err != nil {
			return err
		}
		g.port = port
		g.addr = net.JoinHostPort(g.host, strconv.Itoa(port))
		g.pprof = net.JoinHostPort(g.host, strconv.Itoa(pp))
		argv := []string{g.bin, "serve", "--data", g.data, "--listen", g.addr}
		if cfg != "" {
			argv = append(argv, "--config", cfg)
		}
		env := append(os.Environ(), "SSHGATE_PPROF="+g.pprof)
		srv, err := startServer("gate "+g.name, filepath.Join(dir, "gate.log"), env, argv...)
		if err != nil {
			return err
		}
		if last = srv.waitBanner(g.addr, 60*time.Second); last == nil {
			g.server = srv
			break
		}
		srv.Stop(killGrace)
	}
	if last != nil {
		return last
	}
	g.knownHosts = filepath.Join(dir, "known_hosts")
	_, err := harness.WriteKnownHosts(g.knownHosts, g.host, g.port, g.hostKeyPub())
	return err
}

// hostKeyPub is the gate's public ed25519 host key file.
func (g *gate) hostKeyPub() string {
	return filepath.Join(g.data, "host_keys", "ssh_host_ed25519_key.pub")
}

// endpoint is one way to reach the sshd: directly or through a gate.
type endpoint struct {
	label  string // "direct" or "gate"
	login  string // root, or alice+up
	g      *gate  // nil when direct
	client harness.Client
	// jumpConfig: an ssh_config for ssh -J gate LOGIN@up (jumpEndpoint);
	// only ssh is run this way.
	jumpConfig string
	also       *gate // a second gate behind the same address (its CPU counts too)
}

// benchOpts are the -o options of every client the bench runs, before the
// harness's defaults.
var benchOpts = []string{"ConnectTimeout=30"}

// withKex returns a copy of e whose clients offer only kex.
func (e *endpoint) withKex(kex string) *endpoint {
	n := *e
	n.client.Opts = append(append([]string{}, e.client.Opts...), "KexAlgorithms="+kex)
	return &n
}

func directEndpoint(s *sshd, key, dir string) (*endpoint, error) {
	kh := filepath.Join(dir, "known_hosts_direct")
	if _, err := harness.WriteKnownHosts(kh, s.host, s.port, s.hostKeyPub); err != nil {
		return nil, err
	}
	return &endpoint{label: "direct", login: "root",
		client: harness.Client{Host: s.host, Port: s.port, Key: key, KnownHosts: kh, Opts: benchOpts}}, nil
}

func gateEndpoint(g *gate, key string) *endpoint {
	return &endpoint{label: "gate", login: "alice+up", g: g,
		client: harness.Client{Host: g.host, Port: g.port, Key: key, KnownHosts: g.knownHosts, Opts: benchOpts}}
}

// jumpEndpoint reaches target up through g with ssh -J (ssh.jump): its
// known_hosts is the gate's own plus the line `config known-hosts` prints.
func jumpEndpoint(ctx context.Context, g *gate, key, dir string) (*endpoint, error) {
	gd := gateEndpoint(g, key)
	gd.login = "alice"
	line, err := gd.ssh(ctx, nil, "config", "known-hosts").Output()
	if err != nil {
		return nil, fmt.Errorf("config known-hosts: %w", err)
	}
	own, err := os.ReadFile(g.knownHosts)
	if err != nil {
		return nil, err
	}
	kh := filepath.Join(dir, "known_hosts_jump")
	if err := os.WriteFile(kh, append(own, line...), 0o600); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("Host gate\n    HostName %s\n    Port %d\n    User alice\nHost *\n    IdentityFile %s\n    IdentitiesOnly yes\n"+
		"    UserKnownHostsFile %s\n    GlobalKnownHostsFile /dev/null\n    StrictHostKeyChecking yes\n    BatchMode yes\n"+
		"    ControlMaster no\n    ControlPath none\n    ConnectTimeout 30\n", g.host, g.port, key, kh)
	path := filepath.Join(dir, "ssh_config_jump")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	return &endpoint{label: "gate -J", login: "root", g: g, jumpConfig: path}, nil
}

// clientFor is the endpoint's client, logging in as e.login, its commands
// bound to ctx.
func (e *endpoint) clientFor(ctx context.Context) *harness.Client {
	c := e.client
	c.FixedLogin, c.Context = e.login, ctx
	return &c
}

func (e *endpoint) dest() string { return e.login + "@" + e.client.Host }

// ssh prepares `ssh OPTS -p PORT [extra...] DEST remote...`.
func (e *endpoint) ssh(ctx context.Context, extra []string, remote ...string) *exec.Cmd {
	if e.jumpConfig != "" {
		a := append(append([]string{"-F", e.jumpConfig, "-J", "gate"}, extra...), e.login+"@up")
		cmd := exec.CommandContext(ctx, "ssh", append(a, remote...)...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		return cmd
	}
	a := append(append(append([]string{}, extra...), e.dest()), remote...)
	return e.clientFor(ctx).SSH(a...)
}

// cipherArgs is -c CIPHER, or nothing for the client's default offer.
func cipherArgs(cipher string) []string {
	if cipher == "" {
		return nil
	}
	return []string{"-c", cipher}
}

// scp prepares `scp OPTS -q -P PORT [-c C] SRC DEST:DST` (SFTP mode, the default).
func (e *endpoint) scp(ctx context.Context, cipher, src, dst string) *exec.Cmd {
	return e.clientFor(ctx).SCP(append(cipherArgs(cipher), src, e.dest()+":"+dst)...)
}

// sftp prepares `sftp OPTS -P PORT -q [-c C] -b BATCH DEST`.
func (e *endpoint) sftp(ctx context.Context, cipher, batch string) *exec.Cmd {
	a := append(append([]string{"-q"}, cipherArgs(cipher)...), "-b", batch, e.dest())
	return e.clientFor(ctx).SFTP(a...)
}

// neg is what two SSH peers agreed on.
type neg struct{ kex, cipher string }

func (n neg) String() string { return n.cipher + " (kex " + n.kex + ")" }

// parseNeg reads the kex lines of `ssh -v` or of sshd at LogLevel DEBUG1.
func parseNeg(log string) neg {
	n := neg{kex: "?", cipher: "?"}
	for _, line := range strings.Split(log, "\n") {
		if _, rest, ok := strings.Cut(line, "kex: algorithm: "); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n.kex = f[0]
			}
		}
		// kex: client->server cipher: aes128-gcm@openssh.com MAC: <implicit> compression: none
		if _, rest, ok := strings.Cut(line, "kex: client->server cipher: "); ok {
			f := strings.Fields(rest)
			if len(f) >= 3 && f[1] == "MAC:" && f[2] != "<implicit>" {
				n.cipher = f[0] + "+" + f[2]
			} else if len(f) > 0 {
				n.cipher = f[0]
			}
		}
	}
	return n
}

// negotiated runs `ssh -v [-c C] DEST true` and returns what the client and
// its first hop agreed on.
func (e *endpoint) negotiated(ctx context.Context, cipher string) neg {
	out, _ := e.ssh(ctx, append([]string{"-v"}, cipherArgs(cipher)...), "true").CombinedOutput()
	return parseNeg(string(out))
}
