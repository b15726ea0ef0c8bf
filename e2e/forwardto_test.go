package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshgate/sshgate/e2e/harness"
)

// Forwarding reach (grant --forward-to): the gate refuses a local forward
// to a destination the grant does not list before the target hears of it,
// with an SSH open failure naming the destination, and audits every
// attempt.

// localForward runs `ssh -N -L 127.0.0.1:LPORT:REMOTE...` to target, one
// -L per remote (HOST:PORT or /SOCKET), and returns the local ports once
// ssh listens on them. Each readiness probe is a forward attempt.
func localForward(t *testing.T, c *harness.Client, target string, remotes ...string) ([]int, *harness.Buffer) {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port may be taken meanwhile
		var ports []int
		flags := []string{"-N", "-o", "ExitOnForwardFailure=yes"}
		for _, r := range remotes {
			p := harness.FreePort(t)
			ports = append(ports, p)
			flags = append(flags, "-L", fmt.Sprintf("127.0.0.1:%d:%s", p, r))
		}
		stderr := &harness.Buffer{}
		cmd := c.SSHTo(target, flags)
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("ssh -L %s stderr: %s", target, stderr.String())
			}
		})
		alive := func() bool {
			select {
			case <-done:
				return false
			default:
				return true
			}
		}
		lastErr = nil
		for _, p := range ports {
			if lastErr = harness.WaitListening("127.0.0.1:"+strconv.Itoa(p), short, alive); lastErr != nil {
				break
			}
		}
		if lastErr == nil {
			return ports, stderr
		}
		cmd.Process.Kill()
	}
	t.Fatalf("ssh -L: %v", lastErr)
	return nil, nil
}

// readThrough connects to the forwarded local port lport, sends a line and
// returns what comes back before the forward closes.
func readThrough(t *testing.T, lport int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(lport), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(short))
	c.Write([]byte("ping\n"))
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	return string(got)
}

// forwardEvents are the forward events in the gate's audit log for target.
func forwardEvents(t *testing.T, g *harness.Gate, target string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(g.DataDir, "audit", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(string(data), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) == nil && e["type"] == "forward" && e["target"] == target {
			out = append(out, e)
		}
	}
	return out
}

// waitForwardEvent polls the audit log for a forward event to target and
// dest with result (and reason when not "").
func waitForwardEvent(t *testing.T, g *harness.Gate, target, dest, result, reason string) {
	t.Helper()
	var evs []map[string]any
	if !harness.Eventually(short, func() bool {
		evs = forwardEvents(t, g, target)
		for _, e := range evs {
			if e["destination"] == dest && e["result"] == result && (reason == "" || e["reason"] == reason) {
				return true
			}
		}
		return false
	}) {
		t.Errorf("no forward event %s %s %s %s in the audit; forward events of %s: %v", target, dest, result, reason, target, evs)
	}
}

// countingEcho is an echo listener that counts its connections.
type countingEcho struct {
	port  int
	conns chan struct{}
}

func startCountingEcho(t *testing.T) *countingEcho {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	e := &countingEcho{port: l.Addr().(*net.TCPAddr).Port, conns: make(chan struct{}, 1000)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case e.conns <- struct{}{}:
			default:
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return e
}

// A grant's --forward-to reaches what it lists, with real OpenSSH ssh -L
// and sshd: another port on the same host, or the same host by a name not
// listed, is refused by the gate (the sshd never connects) and audited.
func TestForwardToAllowlist(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	allowed, other := startCountingEcho(t), startCountingEcho(t)
	w := newWorld(t, worldOptions{forwarding: true, forwardTo: []string{"127.0.0.1:" + strconv.Itoa(allowed.port)}})
	ap, op := strconv.Itoa(allowed.port), strconv.Itoa(other.port)
	ports, stderr := localForward(t, w.alice, "web-1", "127.0.0.1:"+ap, "127.0.0.1:"+op, "localhost:"+ap)

	echoThrough(t, ports[0], []byte("through the allowlist\n"), 2)
	for _, p := range ports[1:] {
		if got := readThrough(t, p); got != "" {
			t.Errorf("a forward outside the allowlist echoed %q", got)
		}
	}
	for _, want := range []string{
		"administratively prohibited: forwarding to 127.0.0.1:" + op + " is not permitted for target web-1",
		"administratively prohibited: forwarding to localhost:" + ap + " is not permitted for target web-1",
	} {
		if !stderr.WaitFor(want, short) {
			t.Errorf("ssh stderr %q, want it to contain %q", stderr.String(), want)
		}
	}
	if n := len(other.conns); n != 0 {
		t.Errorf("the port outside the allowlist got %d connections", n)
	}
	waitForwardEvent(t, w.gate, "web-1", "127.0.0.1:"+ap, "ok", "")
	waitForwardEvent(t, w.gate, "web-1", "127.0.0.1:"+op, "denied", "destination_not_allowed")
	waitForwardEvent(t, w.gate, "web-1", "localhost:"+ap, "denied", "destination_not_allowed")
	// The session itself still works.
	if r := harness.MustRun(t, w.alice.SSHTo("web-1", nil, "echo ok"), nil, short); r.Stdout != "ok\n" {
		t.Errorf("exec after refused forwards: %q", r.Stdout)
	}
}

// netns is a network namespace the test made (ip netns), removed at the
// test's end: only its own loopback, on which the canaries' addresses are
// added, carries traffic.
type netns struct{ name string }

func newNetns(t *testing.T) *netns {
	t.Helper()
	harness.RequireTools(t, "ip")
	if os.Geteuid() != 0 {
		t.Skip("ip netns needs root")
	}
	// A run killed by its timeout runs no cleanup: remove the namespaces
	// of test processes that are gone.
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			var pid, n int
			name, _, _ := strings.Cut(l, " ")
			if k, _ := fmt.Sscanf(name, "sshgate-fwd-%d-%d", &pid, &n); k == 2 && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
				exec.Command("ip", "netns", "del", name).Run()
			}
		}
	}
	n := &netns{name: fmt.Sprintf("sshgate-fwd-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)}
	ipCmd(t, "netns", "add", n.name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	ipCmd(t, "-n", n.name, "link", "set", "lo", "up")
	return n
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// do runs f on an OS thread moved into the namespace: the sockets f makes
// (listeners, dials) live there, wherever they are used afterwards.
func (n *netns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine, namespace and all
		ns, err := os.Open("/run/netns/" + n.name)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// canary is a TCP listener inside the namespace (or a unix socket) that
// counts connections and greets each with its name.
type canary struct {
	name  string
	addr  string // HOST:PORT or /PATH, as a forward names it
	conns chan struct{}
}

func (c *canary) serve(t *testing.T, l net.Listener) {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case c.conns <- struct{}{}:
			default:
			}
			fmt.Fprintf(conn, "canary %s\n", c.name)
			conn.Close()
		}
	}()
}

// Canaries: a network namespace holds a real sshd (the target) and
// listeners standing for the cloud metadata service (169.254.169.254:80), a
// private service (10.255.0.1:80) and the Docker socket (a unix socket
// reached with ssh -L PORT:/PATH). No forward reaches a canary unless the
// grant's --forward-to names it, one that names it reaches exactly that
// one, and every attempt is audited.
func TestForwardCanaries(t *testing.T) {
	gateOnly(t)
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	ns := newNetns(t)
	ipCmd(t, "-n", ns.name, "addr", "add", "169.254.169.254/32", "dev", "lo")
	ipCmd(t, "-n", ns.name, "addr", "add", "10.255.0.1/32", "dev", "lo")

	sockDir, err := os.MkdirTemp("", "fwdcanary") // short: a socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	canaries := []*canary{
		{name: "metadata", addr: "169.254.169.254:80"},
		{name: "private", addr: "10.255.0.1:80"},
		{name: "docker", addr: filepath.Join(sockDir, "docker.sock")},
	}
	for _, c := range canaries {
		c.conns = make(chan struct{}, 1000)
		var l net.Listener
		if strings.HasPrefix(c.addr, "/") {
			l, err = net.Listen("unix", c.addr)
		} else {
			err = ns.do(func() (err error) { l, err = net.Listen("tcp", c.addr); return })
		}
		if err != nil {
			t.Fatalf("canary %s: %v", c.name, err)
		}
		c.serve(t, l)
	}

	// The target: sshd inside the namespace on its loopback, reached from
	// the gate through a relay on the host's loopback whose every
	// connection is dialled from inside the namespace.
	dir := t.TempDir()
	hostKey, _ := harness.Keygen(t, dir, "ssh_host_ed25519_key")
	authKeys := filepath.Join(dir, "authorized_keys")
	const sshdPort = 2222
	cfg := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(harness.SSHDConfig("127.0.0.1", sshdPort, hostKey, authKeys, "VERBOSE")), 0o600); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll("/run/sshd", 0o755)
	relay, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	go func() {
		for {
			down, err := relay.Accept()
			if err != nil {
				return
			}
			go func() {
				defer down.Close()
				var up net.Conn
				if ns.do(func() (err error) { up, err = net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(sshdPort)); return }) != nil {
					return
				}
				defer up.Close()
				go func() { io.Copy(up, down); up.(*net.TCPConn).CloseWrite() }()
				io.Copy(down, up)
			}()
		}
	}()
	relayAddr := relay.Addr().String()

	g := harness.StartGate(t, harness.GateOptions{})
	if err := os.WriteFile(authKeys, []byte(g.GateKey(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sshdErr := &harness.Buffer{}
	p, err := harness.StartProcess("sshd-netns", sshdErr, nil, "ip", "netns", "exec", ns.name, "/usr/sbin/sshd", "-D", "-e", "-f", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("sshd stderr:\n%s", sshdErr.String())
		}
	})
	if err := harness.WaitBanner(relayAddr, short, p.Alive); err != nil {
		t.Fatalf("sshd in %s: %v", ns.name, err)
	}

	g.Admin(t, "env", "add", "prod")
	alice := g.AddUser(t, "alice")
	docker := canaries[2].addr
	cases := []struct {
		target    string
		grant     []string // after --target TARGET --login root
		reachable string   // the canary the grant names, "" for none
	}{
		{"none", nil, ""},
		{"elsewhere", []string{"--forwarding", "--forward-to", "127.0.0.1:9", "--forward-to", "169.254.169.254:81", "--forward-to", "10.255.0.2:80", "--forward-to", docker + ".bak"}, ""},
		{"metadata", []string{"--forwarding", "--forward-to", "169.254.169.254:80"}, "metadata"},
		{"private", []string{"--forwarding", "--forward-to", "10.255.0.0/16:80"}, "private"},
		{"docker", []string{"--forwarding", "--forward-to", docker}, "docker"},
	}
	for _, tc := range cases {
		pub := filepath.Join(dir, "ssh_host_ed25519_key.pub")
		g.Admin(t, "target", "add", tc.target, "--env", "prod", "--upstream", relayAddr, "--login", "root", "--host-key", pub)
		g.Admin(t, append([]string{"grant", "alice", "--target", tc.target, "--login", "root"}, tc.grant...)...)
	}
	for _, tc := range cases {
		t.Run(tc.target, func(t *testing.T) {
			before := make([]int, len(canaries))
			for i, c := range canaries {
				before[i] = len(c.conns)
			}
			var remotes []string
			for _, c := range canaries {
				remotes = append(remotes, c.addr)
			}
			ports, stderr := localForward(t, alice, tc.target, remotes...)
			for i, c := range canaries {
				got := readThrough(t, ports[i])
				reached := len(c.conns) - before[i]
				if c.name == tc.reachable {
					if got != "canary "+c.name+"\n" || reached == 0 {
						t.Errorf("canary %s, named by the grant: read %q, %d connections", c.name, got, reached)
					}
					waitForwardEvent(t, g, tc.target, c.addr, "ok", "")
					continue
				}
				if got != "" || reached != 0 {
					t.Errorf("canary %s reached through a grant that does not name it: read %q, %d connections", c.name, got, reached)
					continue // no refusal to wait for
				}
				reason := "destination_not_allowed"
				if tc.grant == nil {
					reason = "forwarding_not_permitted"
				} else if !stderr.WaitFor("forwarding to "+c.addr+" is not permitted for target "+tc.target, short) {
					t.Errorf("ssh stderr %q: no refusal naming %s", stderr.String(), c.addr)
				}
				waitForwardEvent(t, g, tc.target, c.addr, "denied", reason)
			}
		})
	}
}
