package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// Containers on demand with the real OpenSSH tools: big scp transfers in
// both modes, PTY shells, port forwarding to a listener inside the
// container, many containers at once, and what a user sees when the engine
// refuses a container or removes it under a live session.

// bgSSH is an ssh command left running in the background.
type bgSSH struct {
	cmd            *exec.Cmd
	stdout, stderr *harness.Buffer
	done           chan struct{}
}

// startSSH starts cmd and kills it (and waits for it) at the end of the test.
func startSSH(t *testing.T, cmd *exec.Cmd) *bgSSH {
	t.Helper()
	b := &bgSSH{cmd: cmd, stdout: &harness.Buffer{}, stderr: &harness.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = b.stdout, b.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	go func() { cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
		if t.Failed() {
			t.Logf("%s: stdout %q stderr %q", strings.Join(cmd.Args[len(cmd.Args)-2:], " "), b.stdout.String(), b.stderr.String())
		}
	})
	return b
}

func (b *bgSSH) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// memLimitCmd prints the container's memory limit (cgroup v1 or v2).
const memLimitCmd = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"

// 100 MiB up and down with scp, SFTP mode and legacy -O, both served by the
// agent (the image has neither scp nor sftp-server), kept in the container's
// /tmp (its writable layer) under the default 1 GiB memory limit.
func TestDockerSCPBig(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "scp")
	w := newDockerWorld(t)
	big, sum := bigFile(t)
	for _, mode := range []struct{ name, flag string }{{"sftp", ""}, {"legacy", "-O"}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			// Per user: the three connections below reach one container.
			name := w.target(t, "scp-"+mode.name, "--docker", harness.TestImage, "--per", "user", "--idle-ttl", "30s")
			args := func(a ...string) []string {
				if mode.flag != "" {
					return append([]string{mode.flag}, a...)
				}
				return a
			}
			r := w.ssh(t, name, nil, "id -u; "+memLimitCmd)
			if r.Code != 0 {
				t.Fatalf("exit %d stderr %q", r.Code, r.Stderr)
			}
			if f := strings.Fields(r.Stdout); len(f) != 2 || f[0] != "65534" || f[1] != strconv.Itoa(1<<30) {
				t.Errorf("uid and memory limit: %q, want 65534 and %d (the defaults)", r.Stdout, 1<<30)
			}

			start := time.Now()
			harness.MustRun(t, w.alice.SCP(args(big, w.alice.Dest(name)+":/tmp/up.bin")...), nil, long)
			t.Logf("upload: %s", time.Since(start).Round(time.Millisecond))
			r = w.ssh(t, name, nil, "sha256sum /tmp/up.bin")
			if f := strings.Fields(r.Stdout); r.Code != 0 || len(f) == 0 || f[0] != sum {
				t.Fatalf("upload: sha256sum in the container: exit %d stdout %q stderr %q, want %s", r.Code, r.Stdout, r.Stderr, sum)
			}

			down := filepath.Join(t.TempDir(), "down.bin")
			start = time.Now()
			harness.MustRun(t, w.alice.SCP(args(w.alice.Dest(name)+":/tmp/up.bin", down)...), nil, long)
			t.Logf("download: %s", time.Since(start).Round(time.Millisecond))
			if got := sha256File(t, down); got != sum {
				t.Fatalf("download: sha256 %s, want %s", got, sum)
			}
			if ids := containersOf(t, name); len(ids) != 1 {
				t.Errorf("containers of %s: %v, want exactly one", name, ids)
			}
			waitNoContainers(t, name, 2*time.Minute) // reaped after the idle TTL
		})
	}
}

// A shell under a real terminal, and a command with -tt.
func TestDockerPTY(t *testing.T) {
	t.Parallel()
	w := newDockerWorld(t)
	name := w.target(t, "pty", "--docker", harness.TestImage, "--user", "1000")
	w.ssh(t, name, nil, "true") // skips when there is no docker backend

	cmd := w.alice.SSHTo(name, []string{"-tt"})
	cmd.Env = append(cmd.Env, "TERM=xterm-256color")
	s := startPTY(t, cmd, 24, 80)
	out := s.do(t, "stty size; tty; echo TERM=$TERM")
	if !strings.Contains(out, "24 80") {
		t.Errorf("stty size: want 24 80 in %q", out)
	}
	if !strings.Contains(out, "/dev/pts/") {
		t.Errorf("tty: want /dev/pts/N in %q", out)
	}
	if !strings.Contains(out, "TERM=xterm-256color") {
		t.Errorf("TERM not passed: %q", out)
	}
	if !s.resize(t, 40, 100) {
		t.Errorf("window change did not reach the container's pty")
	}
	fmt.Fprintf(s.ptmx, "exit 5\r")
	select {
	case <-s.done:
		if code := cmd.ProcessState.ExitCode(); code != 5 {
			t.Errorf("shell `exit 5`: ssh exited %d", code)
		}
	case <-time.After(short):
		t.Fatalf("ssh did not exit after `exit 5`")
	}

	cmd = w.alice.SSHTo(name, []string{"-tt"}, "stty size; tty; exit 7")
	s = startPTY(t, cmd, 30, 90)
	select {
	case <-s.done:
	case <-time.After(short):
		t.Fatal("ssh -tt CMD did not exit")
	}
	if code := cmd.ProcessState.ExitCode(); code != 7 {
		t.Errorf("ssh -tt 'exit 7': exit %d", code)
	}
	if out := s.out.String(); !strings.Contains(out, "30 90") || !strings.Contains(out, "/dev/pts/") {
		t.Errorf("ssh -tt 'stty size; tty': %q", out)
	}
	waitNoContainers(t, name, 30*time.Second)
}

// dockerForward runs `ssh -N -L LPORT:127.0.0.1:PORT` to target and returns
// the local port once ssh listens on it, and ssh's stderr.
func dockerForward(t *testing.T, c *harness.Client, target string, port int) (int, *harness.Buffer) {
	t.Helper()
	var last string
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken meanwhile
		lport := harness.FreePort(t)
		b := startSSH(t, c.SSHTo(target, []string{"-N", "-o", "ExitOnForwardFailure=yes",
			"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", lport, port)}))
		alive := func() bool { return !b.exited() }
		err := harness.WaitListening("127.0.0.1:"+strconv.Itoa(lport), short, alive)
		if err == nil {
			return lport, b.stderr
		}
		last = fmt.Sprintf("ssh -L: %v; stderr %q", err, b.stderr.String())
	}
	t.Fatal(last)
	return 0, nil
}

// `ssh -L` to a listener inside the container (network none: only its own
// loopback), with the grant's --forwarding; refused without it.
func TestDockerForward(t *testing.T) {
	t.Parallel()
	w := newDockerWorld(t)
	const port = 7707
	// add makes a per-user target (so that the forwarding connection reaches
	// the container where the listener runs) granted with grantFlags, and
	// starts a persistent echo listener in it.
	add := func(t *testing.T, base string, grantFlags ...string) string {
		name := base + "-" + w.tag
		w.gate.Admin(t, "target", "add", name, "--env", "dev", "--login", "user", "--docker", harness.TestImage,
			"--user", "1000", "--per", "user", "--idle-ttl", "30s")
		w.gate.Admin(t, append([]string{"grant", "alice", "--target", name}, grantFlags...)...)
		w.ssh(t, name, nil, "true") // skips when there is no docker backend
		startSSH(t, w.alice.SSHTo(name, nil, fmt.Sprintf("nc -ll -p %d -e cat", port)))
		listening := func() bool {
			r := harness.Run(w.alice.SSHTo(name, nil, "netstat -ltn"), nil, short)
			return strings.Contains(r.Stdout, fmt.Sprintf(":%d ", port))
		}
		if !harness.Eventually(short, listening) {
			t.Fatalf("no listener on port %d in the container of %s", port, name)
		}
		if ids := containersOf(t, name); len(ids) != 1 {
			t.Fatalf("containers of %s: %v, want one", name, ids)
		}
		return name
	}

	t.Run("allowed", func(t *testing.T) {
		t.Parallel()
		name := add(t, "fwd", "--forwarding")
		lport, _ := dockerForward(t, w.alice, name, port)
		payload := make([]byte, 1<<20)
		rand.NewChaCha8([32]byte{11}).Read(payload)
		echoThrough(t, lport, payload, 3) // several connections through one forward
	})

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		name := add(t, "nofwd")
		lport, stderr := dockerForward(t, w.alice, name, port)
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(lport), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(short))
		c.Write([]byte("ping\n"))
		if got, _ := io.ReadAll(c); len(got) != 0 {
			t.Errorf("a refused forward echoed %q", got)
		}
		want := "port forwarding is not permitted for target " + name
		if !stderr.WaitFor(want, short) {
			t.Errorf("ssh stderr %q, want it to contain %q", stderr.String(), want)
		}
		noGoError(t, "refused forward", stderr.String())
		if r := w.ssh(t, name, nil, "echo ok"); r.Code != 0 || r.Stdout != "ok\n" {
			t.Errorf("exec after a refused forward: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
	})
}

var containerIDRE = regexp.MustCompile(`containers/([0-9a-f]{64})/hostname`)

// 20 connections at once to a per-connection target: 20 containers, all
// removed afterwards, and the gate's fds back to where they were.
func TestDockerConcurrentPerConnection(t *testing.T) {
	t.Parallel()
	// 20 clients of one address authenticate at once: lift the per-source
	// limit on unauthenticated connections (16) out of the way.
	cfg := filepath.Join(t.TempDir(), "sshgate.yaml")
	if err := os.WriteFile(cfg, []byte("limits:\n  max_unauthenticated_per_source: 64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newDockerWorld(t, harness.GateOptions{Args: []string{"--config", cfg}})
	name := w.target(t, "many", "--docker", harness.TestImage, "--user", "1000")
	if r := w.ssh(t, name, nil, "true"); r.Code != 0 {
		t.Fatalf("warm-up: exit %d stderr %q", r.Code, r.Stderr)
	}
	waitNoContainers(t, name, 30*time.Second)
	base := w.gate.WaitBaseline(t, w.gate.Stats(t), 0, time.Second)

	const n = 20
	// The container's ID shows in the source of its /etc/hostname mount
	// (every container of a target has the same host name).
	const remote = `grep -o 'containers/[0-9a-f]*/hostname' /proc/self/mountinfo; sleep 1; echo done`
	results := make([]harness.Result, n)
	var wg sync.WaitGroup
	peak := 0
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() { // informative: how many containers ran at once
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			peak = max(peak, runningWith("sshgate.target="+name))
		}
	}()
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = harness.Run(w.alice.SSHTo(name, nil, remote), nil, long)
		}()
	}
	wg.Wait()
	close(stop)
	<-watched
	t.Logf("%d connections in %s; at most %d containers seen running at once", n, time.Since(start).Round(time.Millisecond), peak)
	ids := map[string]int{}
	for i, r := range results {
		m := containerIDRE.FindStringSubmatch(r.Stdout)
		if r.Err != nil || r.Code != 0 || m == nil || !strings.HasSuffix(r.Stdout, "\ndone\n") {
			t.Errorf("connection %d: exit %d (%v) stdout %q stderr %q", i, r.Code, r.Err, r.Stdout, r.Stderr)
			continue
		}
		ids[m[1]]++
	}
	if len(ids) != n {
		t.Errorf("%d distinct containers for %d connections: %v", len(ids), n, ids)
	}
	waitNoContainers(t, name, time.Minute)
	w.gate.WaitBaseline(t, base, 2, 30*time.Second)
}

// Limits the CLI accepts but the engine refuses (more CPUs than the machine
// has): one line naming the problem, a non-zero exit, no container.
func TestDockerEngineRefusesLimits(t *testing.T) {
	t.Parallel()
	w := newDockerWorld(t)
	name := w.target(t, "cpus", "--docker", harness.TestImage, "--user", "1000", "--cpus", "1024")
	want := "sshgate: container for " + name + " could not start: the engine refused the limits"
	for _, flags := range [][]string{nil, {"-tt"}} {
		r := harness.Run(w.alice.SSHTo(name, flags, "echo should-not-run"), nil, short)
		if strings.Contains(r.Stderr, "is not available on this gate") {
			t.Skipf("the gate has no docker backend wired in: %s", strings.TrimSpace(r.Stderr))
		}
		if r.Code == 0 || r.Err != nil {
			t.Errorf("%v: exit %d (%v), want non-zero", flags, r.Code, r.Err)
		}
		line := oneLine(t, fmt.Sprintf("%v stderr", flags), clientNoise(r.Stderr))
		if !strings.HasPrefix(line, want) {
			t.Errorf("%v: stderr %q, want %q", flags, line, want)
		}
		noGoError(t, "refused limits", line)
		if strings.Contains(r.Stdout, "should-not-run") || (flags == nil && r.Stdout != "") {
			t.Errorf("%v: stdout %q", flags, r.Stdout)
		}
	}
	waitNoContainers(t, name, 30*time.Second)
}

// The container is removed under a running command: the client ends at once
// with a non-zero exit and one line, and nothing is left.
func TestDockerContainerRemovedMidSession(t *testing.T) {
	t.Parallel()
	w := newDockerWorld(t)
	name := w.target(t, "gone", "--docker", harness.TestImage, "--user", "1000")
	w.ssh(t, name, nil, "true") // skips when there is no docker backend
	waitNoContainers(t, name, 30*time.Second)
	base := w.gate.WaitBaseline(t, w.gate.Stats(t), 0, time.Second)

	s := startSSH(t, w.alice.SSHTo(name, nil, "echo started; sleep 30; echo finished"))
	if !s.stdout.WaitFor("started\n", short) {
		t.Fatalf("the command did not start: stdout %q stderr %q", s.stdout.String(), s.stderr.String())
	}
	ids := containersOf(t, name)
	if len(ids) != 1 {
		t.Fatalf("containers of %s: %v, want one", name, ids)
	}
	harness.MustRun(t, exec.Command("docker", "rm", "-f", ids[0]), nil, short)
	removed := time.Now()
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("the client still runs 15s after its container was removed: stdout %q stderr %q", s.stdout.String(), s.stderr.String())
	}
	t.Logf("the client ended %s after the removal: exit %d, stderr %q",
		time.Since(removed).Round(time.Millisecond), s.cmd.ProcessState.ExitCode(), s.stderr.String())
	if code := s.cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("exit 0 after the container was removed")
	}
	if strings.Contains(s.stdout.String(), "finished") {
		t.Errorf("stdout %q: the command ran to its end", s.stdout.String())
	}
	line := oneLine(t, "stderr", s.stderr.String())
	if want := "sshgate: container for " + name + " was removed"; line != want {
		t.Errorf("stderr %q: want %q", line, want)
	}
	noGoError(t, "container removed", line)
	waitNoContainers(t, name, 30*time.Second)
	w.gate.WaitBaseline(t, base, 2, 30*time.Second)
}

// The container is killed (docker kill) under a running command, again and
// again: 20 times in CI, 100 under SSHGATE_E2E_FULL=1. Each client ends with
// a non-zero exit and one line naming what happened to its container, the
// gate serves on, and no container is left.
func TestDockerContainerKilledMidSession(t *testing.T) {
	t.Parallel()
	w := newDockerWorld(t)
	name := w.target(t, "killed", "--docker", harness.TestImage, "--user", "1000")
	w.ssh(t, name, nil, "true") // skips when there is no docker backend
	waitNoContainers(t, name, 30*time.Second)
	base := w.gate.WaitBaseline(t, w.gate.Stats(t), 0, time.Second)
	want := regexp.MustCompile(`^sshgate: container for ` + regexp.QuoteMeta(name) + ` (was removed|stopped \(exit code 137\))$`)
	n := count(20, 100)
	start := time.Now()
	var worst time.Duration
	for i := 0; i < n; i++ {
		s := startSSH(t, w.alice.SSHTo(name, nil, "echo started; sleep 60; echo finished"))
		if !s.stdout.WaitFor("started\n", short) {
			t.Fatalf("kill %d: the command did not start: stdout %q stderr %q", i, s.stdout.String(), s.stderr.String())
		}
		ids := containersOf(t, name)
		if len(ids) != 1 {
			t.Fatalf("kill %d: containers of %s: %v, want one", i, name, ids)
		}
		harness.MustRun(t, exec.Command("docker", "kill", ids[0]), nil, short)
		killed := time.Now()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("kill %d: the client still runs 30s after its container was killed: stdout %q stderr %q", i, s.stdout.String(), s.stderr.String())
		}
		worst = max(worst, time.Since(killed))
		if code := s.cmd.ProcessState.ExitCode(); code == 0 {
			t.Errorf("kill %d: exit 0 after the container was killed", i)
		}
		if line := oneLine(t, "stderr", s.stderr.String()); !want.MatchString(line) {
			t.Errorf("kill %d: stderr %q, want %s", i, line, want)
		}
	}
	t.Logf("%d containers killed under a session in %s; the slowest client ended %s after its kill",
		n, time.Since(start).Round(time.Millisecond), worst.Round(time.Millisecond))
	waitNoContainers(t, name, 30*time.Second)
	if r := w.ssh(t, name, nil, "echo again"); r.Code != 0 || r.Stdout != "again\n" {
		t.Errorf("after the kills: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	waitNoContainers(t, name, 30*time.Second)
	w.gate.WaitBaseline(t, base, 2, 30*time.Second)
}

// A docker target added without --login shows the user its containers run
// as in `ls` and the menu when that is a name (--user nobody), and that
// login works; one whose user is root (allowed or not by the gate) or only a
// uid shows "default", and that works too (surprise 4: a shown login that
// was refused).
func TestDockerLoginShown(t *testing.T) {
	t.Parallel()
	w := newDockerWorld(t)
	add := func(name string, flags ...string) (string, string) {
		name = name + "-" + w.tag
		out := w.gate.Admin(t, append([]string{"target", "add", name, "--env", "dev", "--docker", harness.TestImage}, flags...)...)
		w.gate.Admin(t, "grant", "alice", "--target", name)
		return name, out
	}
	named, out := add("named", "--user", "nobody")
	if !strings.Contains(out, "default login nobody: the user the container runs as") {
		t.Errorf("target add --user nobody: %q", out)
	}
	plain, out := add("plain")
	uid, out2 := add("uid", "--user", "1000")
	if strings.Contains(out+out2, "default login") {
		t.Errorf("target add of a root or uid container named a login: %q %q", out, out2)
	}
	r := harness.MustRun(t, w.alice.SSHTo("", nil, "ls", "--json"), nil, short)
	var got []struct {
		Name   string   `json:"name"`
		Logins []string `json:"logins"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
		t.Fatalf("ls --json: %v in %q", err, r.Stdout)
	}
	shown := map[string]string{}
	for _, v := range got {
		shown[v.Name] = strings.Join(v.Logins, ",")
	}
	if shown[named] != "nobody" || shown[plain] != "default" || shown[uid] != "default" {
		t.Fatalf("ls shows logins %v, want %s: nobody, %s and %s: default", shown, named, plain, uid)
	}
	for _, tc := range []struct{ target, want string }{{named + "+nobody", "65534\n"}, {plain + "+default", "65534\n"}, {uid + "+default", "1000\n"}} {
		r := w.ssh(t, tc.target, nil, "id -u")
		if r.Code != 0 || r.Stdout != tc.want {
			t.Errorf("alice+%s id -u: exit %d stdout %q stderr %q, want %q", tc.target, r.Code, r.Stdout, r.Stderr, tc.want)
		}
	}
	if r := w.ssh(t, named+"+default", nil, "true"); r.Code != 1 || !strings.Contains(r.Stderr, "not found or not permitted") {
		t.Errorf("alice+%s+default (a named login): exit %d stderr %q", named, r.Code, r.Stderr)
	}
}
