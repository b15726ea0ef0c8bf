package e2e_test

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// Agent forwarding (ssh -A) with a real ssh-agent, through the gate, where
// the grant says --agent-forwarding; refused otherwise.

// userAgent is a real ssh-agent holding one key.
type userAgent struct {
	sock   string // SSH_AUTH_SOCK
	key    string // the key's private file (for nothing but ssh-add)
	pub    string // its authorized_keys line
	pubKey string // its .pub file
	fp     string // its SHA256 fingerprint
}

func startUserAgent(t *testing.T) *userAgent {
	t.Helper()
	harness.RequireTools(t, "ssh-agent", "ssh-add", "ssh-keygen")
	dir := t.TempDir()
	a := &userAgent{sock: filepath.Join(dir, "agent.sock")}
	out := &harness.Buffer{}
	p, err := harness.StartProcess("ssh-agent", out, nil, "ssh-agent", "-D", "-a", a.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(0) })
	if !harness.Eventually(10*time.Second, func() bool { _, err := os.Stat(a.sock); return err == nil }) {
		t.Fatalf("ssh-agent did not make its socket: %s", out.String())
	}
	a.key, a.pub = harness.Keygen(t, dir, "id_agent")
	a.pubKey = a.key + ".pub"
	add := exec.Command("ssh-add", a.key)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+a.sock)
	harness.MustRun(t, add, nil, short)
	r := harness.MustRun(t, exec.Command("ssh-keygen", "-lf", a.pubKey), nil, short)
	if f := strings.Fields(r.Stdout); len(f) > 1 {
		a.fp = f[1]
	} else {
		t.Fatalf("ssh-keygen -lf: %q", r.Stdout)
	}
	return a
}

// forwarding returns a copy of c that runs ssh -A with the user's agent.
func (a *userAgent) forwarding(c *harness.Client) *harness.Client {
	n := c.WithOpts("ForwardAgent=yes")
	n.Env = append(append([]string{}, c.Env...), "SSH_AUTH_SOCK="+a.sock)
	return n
}

// agentEvents returns the gate's agent.channel audit events.
func agentEvents(t *testing.T, g *harness.Gate) []map[string]any {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(g.DataDir, "audit", "audit.jsonl"))
	var out []map[string]any
	for _, l := range strings.Split(string(b), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) == nil && e["type"] == "agent.channel" {
			out = append(out, e)
		}
	}
	return out
}

// countAgentEvents counts agent.channel events on target with result.
func countAgentEvents(t *testing.T, g *harness.Gate, target, result string) int {
	n := 0
	for _, e := range agentEvents(t, g) {
		if e["target"] == target && e["result"] == result && e["conn_id"] != nil && e["login"] != nil {
			n++
		}
	}
	return n
}

const noAgentLine = "Could not open a connection to your authentication agent."

// ssh -A to an upstream sshd: the target lists the key of the user's agent
// and uses it to log in to a second sshd that trusts only that key; without
// the grant's --agent-forwarding the target has no agent.
func TestAgentForwardingUpstream(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{})
	if w.gate == nil {
		t.Skip("direct mode: no gate")
	}
	ua := startUserAgent(t)
	second := harness.StartSSHD(t, harness.SSHDOptions{})
	second.Authorize(t, ua.pub)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if _, err := harness.WriteKnownHosts(kh, second.Host, second.Port, second.HostKeyPub); err != nil {
		t.Fatal(err)
	}
	hop := "ssh -F none -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + kh +
		" -o IdentityFile=none -p " + strconv.Itoa(second.Port) + " root@127.0.0.1 echo second-hop-ok"

	bob := w.gate.AddUser(t, "bob")
	w.gate.Admin(t, "grant", "bob", "--target", "web-1", "--login", "root", "--agent-forwarding")
	if out := w.gate.Admin(t, "grant", "list", "bob"); !strings.Contains(out, "agent-forwarding") {
		t.Errorf("grant list does not show agent-forwarding: %q", out)
	}

	// A first connection, so that the baseline holds what the gate keeps.
	harness.MustRun(t, bob.SSHTo("web-1", nil, "true"), nil, short)
	base := w.gate.WaitBaseline(t, w.gate.Stats(t), 0, time.Second)

	r := harness.Run(ua.forwarding(bob).SSHTo("web-1", nil, "ssh-add -l && "+hop), nil, short)
	if r.Code != 0 || !strings.Contains(r.Stdout, ua.fp) || !strings.Contains(r.Stdout, "second-hop-ok") {
		t.Fatalf("ssh -A with the grant: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// One agent.channel event per channel: ssh-add's and the second hop's.
	if !harness.Eventually(short, func() bool { return countAgentEvents(t, w.gate, "web-1", "ok") >= 2 }) {
		t.Errorf("agent.channel events: %v", agentEvents(t, w.gate))
	}

	// Without -A the target has no agent, even with the grant.
	r = harness.Run(bob.SSHTo("web-1", nil, "ssh-add -l"), nil, short)
	if r.Code != 2 || !strings.Contains(r.Stderr, noAgentLine) {
		t.Errorf("no -A: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// Without the grant, -A is refused: the target has no agent.
	for _, cmd := range []string{"ssh-add -l", hop} {
		r = harness.Run(ua.forwarding(w.alice).SSHTo("web-1", nil, cmd), nil, short)
		if r.Code == 0 || strings.Contains(r.Stdout, ua.fp) || strings.Contains(r.Stdout, "second-hop-ok") {
			t.Errorf("ssh -A without the grant (%s): exit %d stdout %q stderr %q", cmd, r.Code, r.Stdout, r.Stderr)
		}
		if cmd == "ssh-add -l" && (r.Code != 2 || !strings.Contains(r.Stderr, noAgentLine)) {
			t.Errorf("ssh-add -l without the grant: exit %d stderr %q", r.Code, r.Stderr)
		}
	}
	if n := countAgentEvents(t, w.gate, "web-1", "ok"); n != 2 {
		t.Errorf("%d relayed agent channels, want 2: %v", n, agentEvents(t, w.gate))
	}
	// Nothing of the agent channels stays open in the gate.
	w.gate.WaitBaseline(t, base, 2, 30*time.Second)

	// A figure, not an assertion: ssh -A ... ssh-add -l through the gate
	// (race-built) and straight to the same sshd, alternated, medians.
	key, pub := harness.Keygen(t, t.TempDir(), "id_direct")
	w.sshd.Authorize(t, pub)
	direct := ua.forwarding(harness.Direct(t, w.sshd, "root", key))
	var viaGate, straight []time.Duration
	for i := 0; i < 5; i++ {
		for _, c := range []struct {
			cl  *harness.Client
			out *[]time.Duration
		}{{ua.forwarding(bob), &viaGate}, {direct, &straight}} {
			start := time.Now()
			if r := harness.Run(c.cl.SSHTo("web-1", nil, "ssh-add -l"), nil, short); r.Code != 0 {
				t.Fatalf("ssh -A ssh-add -l: exit %d %q", r.Code, r.Stderr)
			}
			*c.out = append(*c.out, time.Since(start))
		}
	}
	t.Logf("ssh -A HOST ssh-add -l, median of 5: through the gate %s, straight to sshd %s",
		median(viaGate).Round(time.Millisecond), median(straight).Round(time.Millisecond))
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// agentBundle is a directory holding ssh-add and ssh-keygen with the
// libraries they load, to bind-mount into a container of the busybox test
// image (which has no OpenSSH): run them as BUNDLE/ld.so --library-path
// BUNDLE BUNDLE/ssh-add.
func agentBundle(t *testing.T) string {
	t.Helper()
	harness.RequireTools(t, "ldd")
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cp := func(src, name string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, bin := range []string{"ssh-add", "ssh-keygen"} {
		p, err := exec.LookPath(bin)
		if err != nil {
			t.Skip(bin + " not found")
		}
		cp(p, bin)
		out, err := exec.Command("ldd", p).Output()
		if err != nil {
			t.Skipf("ldd %s: %v", p, err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			switch {
			case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
				cp(f[2], filepath.Base(f[2]))
			case len(f) >= 1 && strings.HasPrefix(f[0], "/") && strings.Contains(f[0], "ld-linux"):
				cp(f[0], "ld.so")
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ld.so")); err != nil {
		t.Skip("no dynamic loader found for the bundle")
	}
	return dir
}

// The same with a Docker container target through sshgate-agent: the
// session's socket lists the user's key and signs with it, no other user in
// the container can use it, and it is gone when the session ends; without
// the grant's flag the container has no agent.
func TestDockerAgentForwarding(t *testing.T) {
	w := newDockerWorld(t)
	ua := startUserAgent(t)
	bundle := agentBundle(t)
	const run = "/opt/ssh/ld.so --library-path /opt/ssh /opt/ssh/"
	flags := []string{"--docker", harness.TestImage, "--user", "1000:1000", "--mount", bundle + ":/opt/ssh:ro",
		"--per", "user", "--idle-ttl", "60s"}
	name := w.target(t, "agent", flags...)
	w.gate.Admin(t, "grant", "alice", "--target", name, "--agent-forwarding")
	plain := w.target(t, "noagent", flags...)
	alice := ua.forwarding(w.alice)

	// Listing, then signing with the forwarded key (verified here).
	msg := "signed through the gate\n"
	r := harness.Run(alice.SSHTo(name, nil, run+"ssh-add -l && cat > /tmp/msg && cat > /tmp/key.pub <<'EOF'\n"+
		strings.TrimSpace(string(mustReadFile(t, ua.pubKey)))+"\nEOF\n"+
		run+"ssh-keygen -q -Y sign -f /tmp/key.pub -n e2e /tmp/msg && cat /tmp/msg.sig"), []byte(msg), short)
	if strings.Contains(r.Stderr, "is not available on this gate") {
		t.Skipf("the gate has no docker backend wired in: %s", r.Stderr)
	}
	if r.Code != 0 || !strings.Contains(r.Stdout, ua.fp) {
		t.Fatalf("ssh -A to a container: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	sig := r.Stdout[strings.Index(r.Stdout, "-----BEGIN SSH SIGNATURE-----"):]
	sigFile := filepath.Join(t.TempDir(), "msg.sig")
	os.WriteFile(sigFile, []byte(sig), 0o600)
	check := exec.Command("ssh-keygen", "-Y", "check-novalidate", "-n", "e2e", "-s", sigFile)
	if cr := harness.Run(check, []byte(msg), short); cr.Code != 0 {
		t.Errorf("the container's signature does not verify: %q %q", cr.Stdout, cr.Stderr)
	}
	if !harness.Eventually(short, func() bool { return countAgentEvents(t, w.gate, name, "ok") >= 2 }) {
		t.Errorf("agent.channel events: %v", agentEvents(t, w.gate))
	}

	// A live session's socket: 0600 in a 0700 directory, usable by the
	// session's user only (docker exec as that user and as another).
	sess := alice.SSHTo(name, nil, `echo "$SSH_AUTH_SOCK"; stat -c '%a %u' "$SSH_AUTH_SOCK" "${SSH_AUTH_SOCK%/*}"; read x`)
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	sessErr := &harness.Buffer{}
	sess.Stderr = sessErr
	if err := sess.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sess.Wait() }()
	defer func() {
		sess.Process.Kill()
		<-waited
	}()
	lines := make(chan string, 3)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
	}()
	var got []string
	deadline := time.After(short)
	for len(got) < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("session ended early: %q, stderr %q", got, sessErr.String())
			}
			got = append(got, l)
		case <-deadline:
			t.Fatalf("session printed %q in %s, stderr %q", got, short, sessErr.String())
		}
	}
	sock := got[0]
	if !strings.HasPrefix(sock, "/") || got[1] != "600 1000" || got[2] != "700 1000" {
		t.Fatalf("socket %q modes %q %q, want 600 and 700 owned by 1000", sock, got[1], got[2])
	}
	ids := containersOf(t, name)
	if len(ids) != 1 {
		t.Fatalf("containers of %s: %v", name, ids)
	}
	dockerExec := func(user string, args ...string) harness.Result {
		a := append([]string{"exec", "-u", user, "-e", "SSH_AUTH_SOCK=" + sock, ids[0]}, args...)
		return harness.Run(exec.Command("docker", a...), nil, short)
	}
	addL := []string{"/opt/ssh/ld.so", "--library-path", "/opt/ssh", "/opt/ssh/ssh-add", "-l"}
	if r := dockerExec("1000", addL...); r.Code != 0 || !strings.Contains(r.Stdout, ua.fp) {
		t.Errorf("the session's user cannot use the socket: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := dockerExec("65534", addL...); r.Code != 2 || strings.Contains(r.Stdout, ua.fp) || !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("another user in the container: exit %d %q %q, want permission denied", r.Code, r.Stdout, r.Stderr)
	}
	stdin.Close()
	select {
	case <-waited:
	case <-time.After(short):
		t.Fatal("the session did not end when its stdin closed")
	}
	waited <- nil // for the deferred kill
	ended := time.Now()
	if !harness.Eventually(10*time.Second, func() bool {
		return dockerExec("1000", "test", "-e", sock).Code == 1 && dockerExec("1000", "test", "-e", filepath.Dir(sock)).Code == 1
	}) {
		t.Errorf("the agent socket %s is still there after the session ended", sock)
	} else {
		t.Logf("agent socket and directory gone %s after the client exited (two docker execs included)", time.Since(ended).Round(time.Millisecond))
	}

	// Without the grant's flag: no agent in the container.
	r = harness.Run(alice.SSHTo(plain, nil, run+"ssh-add -l"), nil, short)
	if r.Code != 2 || !strings.Contains(r.Stderr, noAgentLine) {
		t.Errorf("ssh -A without the grant: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Certificates both ways: the gate's login certificate to an sshd that
// trusts only the gate's user CA carries permit-agent-forwarding where the
// grant allows it (sshd honours it), and a user certificate without
// permit-agent-forwarding narrows the grant.
func TestAgentForwardingCertificates(t *testing.T) {
	t.Parallel()
	w := newCAWorld(t)
	ua := startUserAgent(t)
	erin := w.user(t, "erin")
	w.gate.Admin(t, "grant", "erin", "--target", "web", "--agent-forwarding")
	frank := w.user(t, "frank", "web")

	key, cert, _ := w.certKey(t, "erin")
	r := harness.Run(ua.forwarding(withCert(erin, key, cert)).SSHTo("web", nil, "ssh-add -l"), nil, short)
	if r.Code != 0 || !strings.Contains(r.Stdout, ua.fp) {
		t.Errorf("ssh -A with the grant, login certificate to sshd: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	key, cert, _ = w.certKey(t, "erin", "--no-agent-forwarding")
	r = harness.Run(ua.forwarding(withCert(erin, key, cert)).SSHTo("web", nil, "ssh-add -l"), nil, short)
	if r.Code != 2 || !strings.Contains(r.Stderr, noAgentLine) {
		t.Errorf("ssh -A with a --no-agent-forwarding certificate: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	key, cert, _ = w.certKey(t, "frank")
	r = harness.Run(ua.forwarding(withCert(frank, key, cert)).SSHTo("web", nil, "ssh-add -l"), nil, short)
	if r.Code != 2 || !strings.Contains(r.Stderr, noAgentLine) {
		t.Errorf("ssh -A without the grant: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}

	// ssh -A -J: the inner connection, ended by the gate, forwards the agent
	// under the same grant.
	for _, tc := range []struct {
		user  string
		flags []string
		ok    bool
	}{{"gina", []string{"--agent-forwarding"}, true}, {"hank", nil, false}} {
		c := w.gate.AddUser(t, tc.user)
		w.gate.Admin(t, append([]string{"grant", tc.user, "--target", "web"}, tc.flags...)...)
		kh, _ := jumpKnownHosts(t, w.gate, c)
		cmd := exec.Command("ssh", sshJ(jumpConfig(t, c, kh), "-A", "root@web", "ssh-add -l")...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+ua.sock)
		r := harness.Run(cmd, nil, short)
		if tc.ok && (r.Code != 0 || !strings.Contains(r.Stdout, ua.fp)) || !tc.ok && (r.Code != 2 || !strings.Contains(r.Stderr, noAgentLine)) {
			t.Errorf("ssh -A -J as %s (agent forwarding %v): exit %d %q %q", tc.user, tc.ok, r.Code, r.Stdout, r.Stderr)
		}
	}
}
