package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// Root inside, never on the host: --root-inside is refused on an engine
// that does not remap user namespaces (the shared dockerd), at `target add`
// and at connection time, and works on one that does (a private dockerd
// with --userns-remap=default, started here), where root in the container
// is an unprivileged uid on the host.

// sharedDockerRemaps reports whether the shared engine remaps (the
// refusal cannot be shown there then).
func sharedDockerRemaps(t *testing.T) bool {
	out, err := exec.Command("docker", "info", "--format", "{{json .SecurityOptions}}").Output()
	if err != nil {
		t.Fatalf("docker info: %v", err)
	}
	return strings.Contains(string(out), "name=userns") || strings.Contains(string(out), "name=rootless")
}

func TestDockerRootInsideRefused(t *testing.T) {
	w := newDockerWorld(t)
	if sharedDockerRemaps(t) {
		t.Skip("the shared dockerd remaps user namespaces: nothing to refuse")
	}
	name := "root-" + w.tag
	_, se, code := w.gate.AdminResult("target", "add", name, "--env", "dev", "--docker", harness.TestImage, "--root-inside")
	if code != 2 || !strings.Contains(se, "--root-inside: the Docker engine runs without userns-remap, so root in the container would be root on the host") {
		t.Fatalf("target add: exit %d, stderr %q", code, se)
	}
	// Added where the engine cannot be asked (another DOCKER_HOST), the
	// gate refuses it at connection time with one line.
	add := exec.Command(w.gate.Bin, "target", "add", name, "--env", "dev", "--docker", harness.TestImage, "--root-inside",
		"--skip-image-check", "--data", w.gate.DataDir)
	add.Env = append(os.Environ(), "DOCKER_HOST=unix://"+filepath.Join(t.TempDir(), "none.sock"))
	if out, err := add.CombinedOutput(); err != nil || !strings.Contains(string(out), "could not ask the Docker engine") {
		t.Fatalf("target add elsewhere: %v: %s", err, out)
	}
	w.gate.Admin(t, "grant", "alice", "--target", name)
	r := w.ssh(t, name, nil, "id -u")
	want := "sshgate: container for " + name + " could not start: root inside is not allowed here: the Docker engine runs without userns-remap, so root in the container would be root on the host"
	if r.Code == 0 || r.Stdout != "" || !strings.HasPrefix(strings.TrimSpace(r.Stderr), want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
		t.Fatalf("exit %d stdout %q stderr %q, want one line %q", r.Code, r.Stdout, r.Stderr, want)
	}
	if ids := containersOf(t, name); len(ids) != 0 {
		t.Errorf("containers left: %v", ids)
	}
}

// privateDockerd starts a dockerd of the test's own (data, exec root,
// pidfile and socket in a temporary directory, no bridge, no iptables)
// with --userns-remap=default, loads the test image into it, and stops it
// in Cleanup. It returns its DOCKER_HOST.
func privateDockerd(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a private dockerd needs root")
	}
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		t.Skip("no dockerd binary")
	}
	dir, err := os.MkdirTemp("", "sgns")
	if err != nil {
		t.Fatal(err)
	}
	// The remapped root must traverse to its own directory under data.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	host := "unix://" + filepath.Join(dir, "sock")
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"), "-H", host, "--bridge=none", "--iptables=false", "--ip6tables=false",
		"--userns-remap=default")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// Its containers first (the gate removes its own; anything left
		// goes with the daemon's state).
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		log.Close()
		os.RemoveAll(dir)
	})
	dockerH := func(args ...string) *exec.Cmd {
		return exec.Command("docker", append([]string{"-H", host}, args...)...)
	}
	if !harness.Eventually(60*time.Second, func() bool { return dockerH("info").Run() == nil }) {
		b, _ := os.ReadFile(filepath.Join(dir, "log"))
		t.Fatalf("private dockerd did not answer: %s", b)
	}
	out, err := dockerH("info", "--format", "{{json .SecurityOptions}}").Output()
	if err != nil || !strings.Contains(string(out), "name=userns") {
		t.Fatalf("private dockerd security options %s (%v): no userns", out, err)
	}
	load := exec.Command("sh", "-c", "docker save "+harness.TestImage+" | docker -H "+host+" load -q")
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("load %s: %v: %s", harness.TestImage, err, out)
	}
	return host
}

func TestDockerRootInsideRemapped(t *testing.T) {
	harness.RequireDocker(t)
	if directMode {
		t.Skip("docker targets need the gate")
	}
	host := privateDockerd(t)
	w := newDockerWorld(t, harness.GateOptions{Env: []string{"DOCKER_HOST=" + host}})
	name := "root-" + w.tag
	out := w.gate.Admin(t, "target", "add", name, "--env", "dev", "--docker", harness.TestImage, "--root-inside", "--per", "user", "--idle-ttl", "5m")
	if !strings.Contains(out, "remaps root to an unprivileged user") {
		t.Errorf("target add: %q", out)
	}
	w.gate.Admin(t, "grant", "alice", "--target", name)
	r := w.ssh(t, name, nil, "id -u; grep -E '^(Uid|CapEff)' /proc/self/status; touch /root-was-here && chown 1:1 /root-was-here && echo chowned")
	if r.Code != 0 {
		t.Fatalf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	lines := strings.Split(r.Stdout, "\n")
	if lines[0] != "0" || !strings.Contains(r.Stdout, "chowned") || strings.Contains(r.Stdout, "CapEff:\t0000000000000000") {
		t.Errorf("inside: %q (want uid 0, capabilities, chown working)", r.Stdout)
	}
	// On the host, the per-user container's processes run as the remapped
	// uid, not 0.
	ids, err := exec.Command("docker", "-H", host, "ps", "-q", "--filter", "label=sshgate.target="+name).Output()
	if err != nil || len(strings.Fields(string(ids))) != 1 {
		t.Fatalf("containers of %s: %q %v", name, ids, err)
	}
	pidOut, err := exec.Command("docker", "-H", host, "inspect", "-f", "{{.State.Pid}}", strings.Fields(string(ids))[0]).Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidOut)))
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	uid := ""
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Uid:") {
			uid = strings.Fields(l)[1]
		}
	}
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Fatalf("the container's PID 1 runs as host uid %q: root on the host", uid)
	}
	t.Logf("root inside the container is uid %s on the host", uid)
}
