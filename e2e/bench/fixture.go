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

// repoRoot is the directory holding go.mod, searched upwards from the
// working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// buildGate builds ./cmd/sshgate without -race and without cgo, as released.
func buildGate(ctx context.Context, root, out string) error {
	env := append(os.Environ(), "CGO_ENABLED=0")
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", out, "./cmd/sshgate")
	cmd.Dir = root
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/sshgate: %v\n%s", err, b)
	}
	return nil
}

// sshd is the upstream OpenSSH server both paths end at.
type sshd struct {
	*server
	addr, host string
	port       int
	hostKeyPub string
	authKeys   string
}

func startSSHD(ctx context.Context, dir, logLevel string, authorized []string) (*sshd, error) {
	os.MkdirAll("/run/sshd", 0o755)
	hk, err := keygen(ctx, dir, "ssh_host_ed25519_key")
	if err != nil {
		return nil, err
	}
	s := &sshd{host: "127.0.0.1", hostKeyPub: hk + ".pub", authKeys: filepath.Join(dir, "authorized_keys")}
	if err := os.WriteFile(s.authKeys, []byte(strings.Join(authorized, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		s.addr = net.JoinHostPort(s.host, strconv.Itoa(s.port))
		cfg := filepath.Join(dir, "sshd_config")
		lines := []string{
			"Port " + strconv.Itoa(s.port),
			"ListenAddress " + s.host,
			"HostKey " + hk,
			"AuthorizedKeysFile " + s.authKeys,
			"StrictModes no",
			"PermitRootLogin prohibit-password",
			"PubkeyAuthentication yes",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"UsePAM no",
			"Subsystem sftp /usr/lib/openssh/sftp-server",
			"PidFile none",
			"LogLevel " + logLevel,
			"MaxStartups 100:30:200",
			"MaxSessions 200",
			"UseDNS no",
			// Debian's bash sources ~/.bashrc for `bash -c` under sshd unless
			// SHLVL says it is nested; root's rc file on a dev machine can
			// do anything (pyenv init takes a lock and sleeps), which would
			// be timed on both paths. Commands and sftp-server run bare.
			"SetEnv SHLVL=1",
		}
		if err := os.WriteFile(cfg, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
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
		srv.kill()
	}
	return nil, last
}

// sessionPSS sums the proportional set size of the sshd processes serving
// connections (not the listener, not the commands they run).
func (s *sshd) sessionPSS() (kib int64, procs int) {
	for _, p := range harness.Descendants(s.pid()) {
		if c := comm(p); c == "sshd" || c == "sshd-session" {
			kib += pssKiB(p)
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
	defer p.kill()
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
		port, err := freePort()
		if err != nil {
			return err
		}
		pp, err := freePort()
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
		srv.kill()
	}
	if last != nil {
		return last
	}
	pub, err := os.ReadFile(filepath.Join(g.data, "host_keys", "ssh_host_ed25519_key.pub"))
	if err != nil {
		return fmt.Errorf("gate host key: %w", err)
	}
	f := strings.Fields(string(pub))
	if len(f) < 2 {
		return fmt.Errorf("gate host key: %q", pub)
	}
	g.knownHosts = filepath.Join(dir, "known_hosts")
	return os.WriteFile(g.knownHosts, []byte(fmt.Sprintf("[%s]:%d %s %s\n", g.host, g.port, f[0], f[1])), 0o600)
}

// endpoint is one way to reach the sshd: directly or through a gate.
type endpoint struct {
	label      string // "direct" or "gate"
	host       string
	port       int
	login      string // root, or alice+up
	knownHosts string
	key        string // client private key
	g          *gate  // nil when direct
	extra      []string
}

// withKex returns a copy of e whose clients offer only kex.
func (e *endpoint) withKex(kex string) *endpoint {
	n := *e
	n.extra = append(append([]string{}, e.extra...), "-o", "KexAlgorithms="+kex)
	return &n
}

func directEndpoint(s *sshd, key, dir string) (*endpoint, error) {
	pub, err := os.ReadFile(s.hostKeyPub)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(string(pub))
	kh := filepath.Join(dir, "known_hosts_direct")
	if err := os.WriteFile(kh, []byte(fmt.Sprintf("[%s]:%d %s %s\n", s.host, s.port, f[0], f[1])), 0o600); err != nil {
		return nil, err
	}
	return &endpoint{label: "direct", host: s.host, port: s.port, login: "root", knownHosts: kh, key: key}, nil
}

func gateEndpoint(g *gate, key string) *endpoint {
	return &endpoint{label: "gate", host: g.host, port: g.port, login: "alice+up", knownHosts: g.knownHosts, key: key, g: g}
}

func (e *endpoint) dest() string { return e.login + "@" + e.host }

// opts are the options every OpenSSH client program gets.
func (e *endpoint) opts() []string {
	return append([]string{
		"-F", "none",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + e.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "UpdateHostKeys=no",
		"-o", "IdentitiesOnly=yes",
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
		"-o", "ConnectTimeout=30",
		"-i", e.key,
	}, e.extra...)
}

// clientEnv keeps any agent of the caller out of the bench.
func clientEnv() []string { return append(os.Environ(), "SSH_AUTH_SOCK=") }

// ssh prepares `ssh OPTS -p PORT [extra...] DEST remote...`.
func (e *endpoint) ssh(ctx context.Context, extra []string, remote ...string) *exec.Cmd {
	a := append(e.opts(), "-p", strconv.Itoa(e.port))
	a = append(a, extra...)
	a = append(a, e.dest())
	a = append(a, remote...)
	cmd := exec.CommandContext(ctx, "ssh", a...)
	cmd.Env = clientEnv()
	return cmd
}

// cipherArgs is -c CIPHER, or nothing for the client's default offer.
func cipherArgs(cipher string) []string {
	if cipher == "" {
		return nil
	}
	return []string{"-c", cipher}
}

// scp prepares `scp OPTS -P PORT [-c C] SRC DEST:DST` (SFTP mode, the default).
func (e *endpoint) scp(ctx context.Context, cipher, src, dst string) *exec.Cmd {
	a := append(e.opts(), "-q", "-P", strconv.Itoa(e.port))
	a = append(a, cipherArgs(cipher)...)
	a = append(a, src, e.dest()+":"+dst)
	cmd := exec.CommandContext(ctx, "scp", a...)
	cmd.Env = clientEnv()
	return cmd
}

// sftp prepares `sftp OPTS -P PORT [-c C] -b BATCH DEST`.
func (e *endpoint) sftp(ctx context.Context, cipher, batch string) *exec.Cmd {
	a := append(e.opts(), "-q", "-P", strconv.Itoa(e.port))
	a = append(a, cipherArgs(cipher)...)
	a = append(a, "-b", batch, e.dest())
	cmd := exec.CommandContext(ctx, "sftp", a...)
	cmd.Env = clientEnv()
	return cmd
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
