package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/gate"
)

// Kubernetes targets end to end: the built gate, real OpenSSH clients and
// the private cluster of scripts/k8s/up.sh, reached with the shipped RBAC
// only (dist/kubernetes/rbac.yaml, namespace sshgate-pods). The agent image
// is built here from the test's agent binary and imported into the
// cluster's containerd; nothing is pulled.

const kubeNS = "sshgate-pods"

var (
	agentImageOnce sync.Once
	agentImage     string
	agentImageErr  error
)

// kubeAgentImage builds the agent image (dist/kubernetes/Dockerfile.agent)
// from the harness's agent binary, tagged by its hash, and imports it into
// the cluster's containerd once per binary.
func kubeAgentImage(t *testing.T, k *kubeCluster) string {
	t.Helper()
	agentImageOnce.Do(func() {
		bin := harness.AgentBinary(t)
		data, err := os.ReadFile(bin)
		if err != nil {
			agentImageErr = err
			return
		}
		sum := sha256.Sum256(data)
		tag := "sshgate-test/agent:" + hex.EncodeToString(sum[:6])
		sock := filepath.Join(k.state, "containerd", "containerd.sock")
		if out, err := exec.Command("ctr", "-a", sock, "-n", "k8s.io", "images", "ls", "-q").Output(); err == nil &&
			bytes.Contains(out, []byte("docker.io/"+tag+"\n")) {
			agentImage = tag
			return
		}
		dir, err := os.MkdirTemp("", "sshgate-agent-image")
		if err != nil {
			agentImageErr = err
			return
		}
		defer os.RemoveAll(dir)
		df, err := os.ReadFile("../dist/kubernetes/Dockerfile.agent")
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "sshgate-agent"), data, 0o755)
		}
		if err != nil {
			agentImageErr = err
			return
		}
		build := exec.Command("docker", "build", "-q", "--network", "none", "-t", tag, dir)
		build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		if out, err := build.CombinedOutput(); err != nil {
			agentImageErr = fmt.Errorf("docker build: %v: %s", err, out)
			return
		}
		imp := exec.Command("sh", "-c", "docker save "+tag+" | ctr -a "+sock+" -n k8s.io images import -")
		if out, err := imp.CombinedOutput(); err != nil {
			agentImageErr = fmt.Errorf("import %s: %v: %s", tag, err, out)
			return
		}
		agentImage = tag
	})
	if agentImageErr != nil {
		t.Fatalf("agent image: %v", agentImageErr)
	}
	return agentImage
}

type kubeWorld struct {
	k     *kubeCluster
	gate  *harness.Gate
	alice *harness.Client
	tag   string
	cfg   string // the gate's configuration file
}

// newKubeWorld starts a gate whose kubernetes backend uses the gate's
// kubeconfig (user sshgate, bound by the shipped role only) and user alice.
// extra is appended to its configuration file.
func newKubeWorld(t *testing.T, extra ...string) *kubeWorld {
	t.Helper()
	return newKubeWorldEnv(t, nil, extra...)
}

// newKubeWorldEnv is newKubeWorld with extra environment for the gate.
func newKubeWorldEnv(t *testing.T, env []string, extra ...string) *kubeWorld {
	t.Helper()
	return newKubeWorldAt(t, "", env, extra...)
}

// newKubeWorldAt is newKubeWorldEnv with the gate on kubeconfig (when not
// empty) instead of the cluster's gate.kubeconfig.
func newKubeWorldAt(t *testing.T, kubeconfig string, env []string, extra ...string) *kubeWorld {
	t.Helper()
	k := requireKube(t)
	if kubeconfig == "" {
		kubeconfig = filepath.Join(k.state, "gate.kubeconfig")
	}
	harness.RequireDocker(t) // the agent image is built with docker
	if directMode {
		t.Skip("kubernetes targets need the gate")
	}
	rbac, err := os.ReadFile("../dist/kubernetes/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k.must(t, "admin", rbac, "apply", "-f", "-")
	img := kubeAgentImage(t, k)
	cfg := filepath.Join(t.TempDir(), "sshgate.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`kubernetes:
  kubeconfig: %s
  namespace: %s
  agent_image: %s
  image_pull_policy: Never
  start_timeout: 30s
%s`, kubeconfig, kubeNS, img, strings.Join(extra, ""))), 0o600); err != nil {
		t.Fatal(err)
	}
	g := harness.StartGate(t, harness.GateOptions{Args: []string{"--config", cfg}, Env: env})
	g.Admin(t, "env", "add", "dev")
	return &kubeWorld{k: k, gate: g, alice: g.AddUser(t, "alice"), tag: strings.ToLower(gate.NewRef()), cfg: cfg}
}

// target adds a kubernetes target NAME-TAG granted to alice.
func (w *kubeWorld) target(t *testing.T, name string, flags ...string) string {
	t.Helper()
	name = name + "-" + w.tag
	args := append([]string{"target", "add", name, "--env", "dev", "--login", "user", "--kubernetes"}, flags...)
	w.gate.Admin(t, args...)
	w.gate.Admin(t, "grant", "alice", "--target", name)
	return name
}

// pods lists the names of target's pods (in every phase, deleting ones too).
func (w *kubeWorld) pods(t *testing.T, target string) []string {
	t.Helper()
	out, err := w.k.run(context.Background(), "admin", nil, "-n", kubeNS, "get", "pods", "-l", "sshgate.target="+target, "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}

func (w *kubeWorld) waitNoPods(t *testing.T, target string) {
	t.Helper()
	if !harness.Eventually(30*time.Second, func() bool { return len(w.pods(t, target)) == 0 }) {
		t.Fatalf("pods of %s still there: %v", target, w.pods(t, target))
	}
}

// TestKubeTarget: exec with stdin, stdout, stderr and the exit code in a
// hardened pod, sftp byte-exact both ways, and no pod left afterwards.
func TestKubeTarget(t *testing.T) {
	w := newKubeWorld(t)
	name := w.target(t, "box", "--image", harness.TestImage, "--memory", "128m", "--cpus", "0.5")

	t0 := time.Now()
	r := harness.Run(w.alice.SSHTo(name, nil, "id -u; grep -E 'CapEff|NoNewPrivs|Seccomp' /proc/self/status; ls /var/run/secrets 2>&1 || true"), nil, short)
	if r.Code != 0 {
		t.Fatalf("exit %d, stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("first command, cold pod: %s", time.Since(t0).Round(time.Millisecond))
	if !strings.HasPrefix(r.Stdout, "65534\n") {
		t.Errorf("uid: %q", r.Stdout)
	}
	got := map[string]string{}
	for _, m := range statusLine.FindAllStringSubmatch(r.Stdout, -1) {
		got[m[1]] = m[2]
	}
	if got["CapEff"] != "0000000000000000" || got["NoNewPrivs"] != "1" || got["Seccomp"] != "2" {
		t.Errorf("confinement: %v", got)
	}
	if !strings.Contains(r.Stdout, "No such file") {
		t.Errorf("a service account token is mounted: %q", r.Stdout)
	}

	r = harness.Run(w.alice.SSHTo(name, nil, "wc -c; echo err >&2; exit 3"), []byte("0123456789"), short)
	if r.Code != 3 || strings.TrimSpace(r.Stdout) != "10" || r.Stderr != "err\n" {
		t.Errorf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}

	// SFTP, served by the agent: 3 MiB up and back, byte-exact.
	dir := t.TempDir()
	payload := make([]byte, 3<<20+17)
	rand.Read(payload)
	up, down := filepath.Join(dir, "up.bin"), filepath.Join(dir, "down.bin")
	if err := os.WriteFile(up, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	batch := fmt.Sprintf("put %s /tmp/f.bin\nget /tmp/f.bin %s\n", up, down)
	sr := harness.Run(w.alice.SFTP("-b", "-", w.alice.Dest(name)), []byte(batch), short)
	if sr.Code != 0 {
		t.Fatalf("sftp: exit %d stdout %q stderr %q", sr.Code, sr.Stdout, sr.Stderr)
	}
	if back, err := os.ReadFile(down); err != nil || !bytes.Equal(back, payload) {
		t.Errorf("sftp round trip: %d bytes back (%v), want %d identical", len(back), err, len(payload))
	}
	// Per connection: every pod is gone once the clients are.
	w.waitNoPods(t, name)
}

// TestKubePTY: a shell under a real terminal (size, resize, exit status).
func TestKubePTY(t *testing.T) {
	w := newKubeWorld(t)
	name := w.target(t, "pty", "--image", harness.TestImage, "--user", "1000")
	cmd := w.alice.SSHTo(name, []string{"-tt"})
	cmd.Env = append(cmd.Env, "TERM=xterm-256color")
	s := startPTY(t, cmd, 24, 80)
	out := s.do(t, "stty size; tty; id -u; echo TERM=$TERM")
	for _, want := range []string{"24 80", "/dev/pts/", "1000", "TERM=xterm-256color"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in %q", want, out)
		}
	}
	if !s.resize(t, 40, 100) {
		t.Errorf("window change did not reach the pod's pty")
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
	w.waitNoPods(t, name)
}

// TestKubePerUser: a per-user pod is reused by the user's next connection
// (its files are still there), then removed with the gate.
func TestKubePerUser(t *testing.T) {
	w := newKubeWorld(t)
	name := w.target(t, "mine", "--image", harness.TestImage, "--per", "user", "--idle-ttl", "5m")
	r := harness.Run(w.alice.SSHTo(name, nil, "echo kept > /tmp/mark"), nil, short)
	if r.Code != 0 {
		t.Fatalf("first: exit %d stderr %q", r.Code, r.Stderr)
	}
	t0 := time.Now()
	r = harness.Run(w.alice.SSHTo(name, nil, "cat /tmp/mark"), nil, short)
	if r.Code != 0 || r.Stdout != "kept\n" {
		t.Fatalf("second: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("command in a warm per-user pod: %s", time.Since(t0).Round(time.Millisecond))
	if pods := w.pods(t, name); len(pods) != 1 {
		t.Errorf("pods: %v, want one", pods)
	}
	out := w.k.must(t, "admin", nil, "-n", kubeNS, "get", "pods", "-l", "sshgate.target="+name, "-o", "jsonpath={.items[0].metadata.labels}")
	if !strings.Contains(out, `"sshgate.user":"alice"`) || !strings.Contains(out, `"sshgate.per":"user"`) {
		t.Errorf("labels: %s", out)
	}
	if err := w.gate.Stop(); err != nil {
		t.Logf("stop gate: %v", err)
	}
	w.waitNoPods(t, name)
}

// TestKubeMissingImage: a target whose image is not on the cluster gives the
// user one line naming it, within the start timeout, and leaves no pod.
func TestKubeMissingImage(t *testing.T) {
	w := newKubeWorld(t)
	name := w.target(t, "noimg", "--image", "sshgate-test/no-such-image:1")
	t0 := time.Now()
	r := harness.Run(w.alice.SSHTo(name, nil, "true"), nil, short)
	took := time.Since(t0)
	want := fmt.Sprintf(`container for %s could not start: image "sshgate-test/no-such-image:1" not available on the cluster`, name)
	if r.Code == 0 || !strings.Contains(r.Stderr, want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
		t.Errorf("exit %d stderr %q, want one line with %q", r.Code, r.Stderr, want)
	}
	t.Logf("refused after %s", took.Round(time.Millisecond))
	w.waitNoPods(t, name)
}

// TestKubeNoRBAC: in a namespace where the shipped role is not bound, the
// user reads one line saying the gate may not manage pods there.
func TestKubeNoRBAC(t *testing.T) {
	w := newKubeWorld(t)
	name := w.target(t, "norbac", "--image", harness.TestImage, "--namespace", "default")
	r := harness.Run(w.alice.SSHTo(name, nil, "true"), nil, short)
	want := fmt.Sprintf(`container for %s could not start: the gate may not manage pods in namespace "default"`, name)
	if r.Code == 0 || !strings.Contains(r.Stderr, want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
		t.Errorf("exit %d stderr %q, want one line with %q", r.Code, r.Stderr, want)
	}
}

// TestKubeOrphans: pods left by a gate killed with SIGKILL are deleted by
// the next gate on the same data directory.
func TestKubeOrphans(t *testing.T) {
	w := newKubeWorld(t)
	name := w.target(t, "orphan", "--image", harness.TestImage, "--per", "user", "--idle-ttl", "10m")
	if r := harness.Run(w.alice.SSHTo(name, nil, "true"), nil, short); r.Code != 0 {
		t.Fatalf("exit %d stderr %q", r.Code, r.Stderr)
	}
	if pods := w.pods(t, name); len(pods) != 1 {
		t.Fatalf("pods: %v, want the per-user one", pods)
	}
	if err := syscall.Kill(w.gate.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(10*time.Second, w.gate.Exited)
	if pods := w.pods(t, name); len(pods) != 1 {
		t.Fatalf("pods after kill -9: %v, want the orphan", pods)
	}
	harness.StartGate(t, harness.GateOptions{DataDir: w.gate.DataDir, Args: []string{"--config", w.cfg}})
	w.waitNoPods(t, name)
}

// TestKubePool: a pool pod is started beside the first connection and
// taken by the next one; stopping the gate removes it.
func TestKubePool(t *testing.T) {
	w := newKubeWorld(t)
	name := w.target(t, "pool", "--image", harness.TestImage, "--pool", "1")
	if r := harness.Run(w.alice.SSHTo(name, nil, "true"), nil, short); r.Code != 0 {
		t.Fatalf("first: exit %d stderr %q", r.Code, r.Stderr)
	}
	pooled := func() bool {
		out, err := w.k.run(context.Background(), "admin", nil, "-n", kubeNS, "get", "pods", "-l", "sshgate.target="+name+",sshgate.pool=1",
			"--field-selector", "status.phase=Running", "-o", "name")
		return err == nil && len(strings.Fields(string(out))) == 1
	}
	if !harness.Eventually(short, pooled) {
		t.Fatalf("the pool did not fill: %v", w.pods(t, name))
	}
	t0 := time.Now()
	if r := harness.Run(w.alice.SSHTo(name, nil, "echo hi"), nil, short); r.Code != 0 || r.Stdout != "hi\n" {
		t.Fatalf("pooled: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("command in a pool pod: %s", time.Since(t0).Round(time.Millisecond))
	if err := w.gate.Stop(); err != nil {
		t.Logf("stop gate: %v", err)
	}
	w.waitNoPods(t, name)
}

// TestKubeConcurrent: 20 sessions at once, each in its own pod, all
// answered, and no pod left afterwards.
func TestKubeConcurrent(t *testing.T) {
	// 20 handshakes at once from one address: above the default per-source cap.
	w := newKubeWorld(t, "limits:\n  max_unauthenticated_per_source: 64\n")
	name := w.target(t, "many", "--image", harness.TestImage, "--memory", "32m")
	const n = 20
	results := make([]harness.Result, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = harness.Run(w.alice.SSHTo(name, nil, fmt.Sprintf("echo %d", i)), nil, 3*short)
		}()
	}
	wg.Wait()
	t.Logf("%d sessions in their own pods: all answered in %s", n, time.Since(t0).Round(time.Millisecond))
	for i, r := range results {
		if r.Code != 0 || r.Stdout != fmt.Sprintf("%d\n", i) {
			t.Errorf("session %d: exit %d stdout %q stderr %q", i, r.Code, r.Stdout, r.Stderr)
		}
	}
	w.waitNoPods(t, name)
}

// TestKubePodDeletedMidSession: the pod is deleted under a running command:
// the client ends with a non-zero exit and one line, and no pod is left.
func TestKubePodDeletedMidSession(t *testing.T) {
	w := newKubeWorld(t)
	name := w.target(t, "gone", "--image", harness.TestImage)
	s := startSSH(t, w.alice.SSHTo(name, nil, "echo started; sleep 30; echo finished"))
	if !s.stdout.WaitFor("started\n", short) {
		t.Fatalf("the command did not start: stdout %q stderr %q", s.stdout.String(), s.stderr.String())
	}
	pods := w.pods(t, name)
	if len(pods) != 1 {
		t.Fatalf("pods of %s: %v, want one", name, pods)
	}
	w.k.must(t, "admin", nil, "-n", kubeNS, "delete", pods[0], "--wait=false")
	removed := time.Now()
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the client still runs 20s after its pod was deleted: stdout %q stderr %q", s.stdout.String(), s.stderr.String())
	}
	t.Logf("the client ended %s after the deletion: exit %d, stderr %q",
		time.Since(removed).Round(time.Millisecond), s.cmd.ProcessState.ExitCode(), s.stderr.String())
	if code := s.cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("exit 0 after the pod was deleted")
	}
	if strings.Contains(s.stdout.String(), "finished") {
		t.Errorf("stdout %q: the command ran to its end", s.stdout.String())
	}
	line := oneLine(t, "stderr", s.stderr.String())
	if want := "sshgate: container for " + name + " was removed"; line != want {
		t.Errorf("stderr %q: want %q", line, want)
	}
	noGoError(t, "pod deleted", line)
	w.waitNoPods(t, name)
}

// TestKubeReadonlyRoot: with kubernetes.readonly_rootfs the pod's root is
// read-only and /tmp writable; the agent still gets in (its installer).
func TestKubeReadonlyRoot(t *testing.T) {
	w := newKubeWorld(t, "  readonly_rootfs: true\n")
	name := w.target(t, "ro", "--image", harness.TestImage)
	// uid 65534 could not write / anyway: ask the mount table.
	r := harness.Run(w.alice.SSHTo(name, nil, "touch /tmp/ok && echo tmp-ok; awk '$2==\"/\"{split($4,o,\",\"); print o[1]}' /proc/mounts"), nil, short)
	if r.Code != 0 || r.Stdout != "tmp-ok\nro\n" {
		t.Errorf("exit %d stdout %q stderr %q, want tmp-ok and / ro", r.Code, r.Stdout, r.Stderr)
	}
	w.waitNoPods(t, name)
}
