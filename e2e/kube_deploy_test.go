package e2e_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/gate"
)

// gateImage builds the gate's own image (dist/kubernetes/Dockerfile, as
// `make image` does: static binaries, FROM scratch) and imports it into the
// cluster's containerd. The harness's binaries are race builds, linked
// against libc, so the image gets static ones of its own.
func gateImage(t *testing.T, k *kubeCluster) string {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "../cmd/sshgate", "../cmd/sshgate-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	h := sha256.New()
	for _, name := range []string{"sshgate", "sshgate-agent"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(data)
	}
	df, err := os.ReadFile("../dist/kubernetes/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644)
	tag := "sshgate-test/gate:" + hex.EncodeToString(h.Sum(nil)[:6])
	build = exec.Command("docker", "build", "-q", "--network", "none", "-t", tag, dir)
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v: %s", err, out)
	}
	sock := filepath.Join(k.state, "containerd", "containerd.sock")
	if out, err := exec.Command("sh", "-c", "docker save "+tag+" | ctr -a "+sock+" -n k8s.io images import -").CombinedOutput(); err != nil {
		t.Fatalf("import %s: %v: %s", tag, err, out)
	}
	return tag
}

// The gate itself deployed in the cluster from the shipped manifests
// (dist/kubernetes, kubectl apply -k): every object passes the API
// server's dry-run as shipped; then, with the Secret sshgate-keys made as
// the README says (host keys and gate key generated here) and a test
// overlay, the gate's pod becomes Ready, presents exactly the Secret's host
// key through the Service (known_hosts holding only that key,
// StrictHostKeyChecking=yes), and a user reaches a pod target with a real
// OpenSSH client; a restarted pod (a fresh emptyDir data directory)
// presents the same host key again.
//
// The overlay changes only what this test cluster needs: no kube-proxy and
// no pod network to the host, so the gate runs with hostNetwork on ports of
// its own on 127.0.0.1, reaches the API server there, is probed there, and
// is reached through `kubectl port-forward svc/sshgate`; its image is the one
// built here, never pulled.
func TestKubeGateInCluster(t *testing.T) {
	t.Parallel()
	k := requireKube(t)
	harness.RequireDocker(t)
	if directMode {
		t.Skip("the gate in a cluster needs the gate")
	}
	tag := gateImage(t, k)
	ns := "sshgate-deploy-" + strings.ToLower(gate.NewRef())
	k.must(t, "admin", nil, "create", "namespace", ns)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := k.run(context.Background(), "admin", nil, "-n", ns, "get", "all,events", "-o", "wide")
			t.Logf("namespace %s:\n%s", ns, out)
			logs, _ := k.run(context.Background(), "admin", nil, "-n", ns, "logs", "deploy/sshgate", "--tail=40")
			t.Logf("gate log:\n%s", logs)
		}
		k.run(context.Background(), "admin", nil, "delete", "namespace", ns, "--wait=true", "--timeout=50s")
	})

	shipped := k.must(t, "admin", nil, "kustomize", "../dist/kubernetes")
	k.must(t, "admin", []byte(shipped), "-n", ns, "apply", "--dry-run=server", "-f", "-")
	// The shipped ConfigMap points the gate at the Secret's files (the
	// overlay's configuration below repeats them), and the Deployment
	// mounts it read-only, 0400.
	for _, want := range []string{kubeKeysConfig, "secretName: sshgate-keys", "mountPath: /etc/sshgate-keys", "defaultMode: 256"} {
		if !strings.Contains(shipped, want) {
			t.Fatalf("the shipped manifests lack %q:\n%s", want, shipped)
		}
	}

	// The Secret, as the README makes it: keys generated here, never the
	// gate's own.
	keys := t.TempDir()
	for _, kk := range [][]string{{"ssh_host_ed25519_key", "ed25519"}, {"ssh_host_rsa_key", "rsa"}, {"gate_key", "ed25519"}} {
		if r := harness.Run(exec.Command("ssh-keygen", "-q", "-N", "", "-t", kk[1], "-f", filepath.Join(keys, kk[0])), nil, short); r.Code != 0 {
			t.Fatalf("ssh-keygen: %s", r.Stderr)
		}
	}
	k.must(t, "admin", nil, "-n", ns, "create", "secret", "generic", "sshgate-keys",
		"--from-file="+filepath.Join(keys, "ssh_host_ed25519_key"), "--from-file="+filepath.Join(keys, "ssh_host_rsa_key"),
		"--from-file="+filepath.Join(keys, "gate_key"))
	fingerprint := func(pub string) string {
		t.Helper()
		r := harness.Run(exec.Command("ssh-keygen", "-l", "-f", filepath.Join(keys, pub)), nil, short)
		f := strings.Fields(r.Stdout)
		if len(f) < 2 {
			t.Fatalf("ssh-keygen -l %s: %q %s", pub, r.Stdout, r.Stderr)
		}
		return f[1]
	}
	secretFP, secretRSAFP := fingerprint("ssh_host_ed25519_key.pub"), fingerprint("ssh_host_rsa_key.pub")

	apiPort := "26443"
	if b, err := os.ReadFile(filepath.Join(k.state, "admin.kubeconfig")); err == nil {
		if m := regexp.MustCompile(`https://127\.0\.0\.1:(\d+)`).FindSubmatch(b); m != nil {
			apiPort = string(m[1])
		}
	}
	sshPort, metricsPort := harness.FreePort(t), harness.FreePort(t)
	base, err := filepath.Abs("../dist/kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	if base, err = filepath.Rel(overlay, base); err != nil { // kustomize takes no absolute base
		t.Fatal(err)
	}
	files := map[string]string{
		"kustomization.yaml": fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: %s
resources:
- %s
images:
- {name: sshgate/sshgate, newName: %s, newTag: %s}
patches:
- path: config.yaml
- path: deploy.yaml
  target: {kind: Deployment, name: sshgate}
`, ns, base, strings.Split(tag, ":")[0], strings.Split(tag, ":")[1]),
		"config.yaml": fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: sshgate}
data:
  sshgate.yaml: |
    listen: 127.0.0.1:%d
    metrics:
      listen: 127.0.0.1:%d
    limits:
      shutdown_grace: 30s
    kubernetes:
      agent_image: %s
      image_pull_policy: Never
      start_timeout: 30s
%s`, sshPort, metricsPort, tag, kubeKeysConfig),
		"deploy.yaml": fmt.Sprintf(`- {op: add, path: /spec/template/spec/hostNetwork, value: true}
- {op: replace, path: /spec/template/spec/containers/0/imagePullPolicy, value: Never}
- {op: replace, path: /spec/template/spec/containers/0/ports, value: [{name: ssh, containerPort: %[1]d}, {name: metrics, containerPort: %[2]d}]}
- {op: replace, path: /spec/template/spec/containers/0/readinessProbe/httpGet, value: {path: /readyz, port: %[2]d, host: 127.0.0.1}}
- {op: replace, path: /spec/template/spec/containers/0/livenessProbe/httpGet, value: {path: /healthz, port: %[2]d, host: 127.0.0.1}}
- {op: add, path: /spec/template/spec/containers/0/env, value: [{name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}, {name: KUBERNETES_SERVICE_PORT, value: "%[3]s"}]}
`, sshPort, metricsPort, apiPort),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(overlay, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rendered := k.must(t, "admin", nil, "kustomize", overlay)
	t0 := time.Now()
	k.must(t, "admin", []byte(rendered), "apply", "-f", "-")
	if _, err := k.run(context.Background(), "admin", nil, "-n", ns, "rollout", "status", "deploy/sshgate", "--timeout=55s"); err != nil {
		t.Fatalf("the gate did not become ready: %v", err)
	}
	t.Logf("apply to Ready: %s", time.Since(t0).Round(time.Millisecond))

	admin := func(stdin []byte, args ...string) string {
		t.Helper()
		return k.must(t, "admin", stdin, append([]string{"-n", ns, "exec", "-i", "deploy/sshgate", "--",
			"/sshgate", "--config", "/etc/sshgate/sshgate.yaml", "--data", "/var/lib/sshgate/data"}, args...)...)
	}
	key, pub := harness.Keygen(t, t.TempDir(), "id_alice")
	setup := func() {
		t.Helper()
		admin(nil, "user", "add", "alice")
		admin([]byte(pub+"\n"), "key", "add", "alice", "-")
		admin(nil, "env", "add", "dev")
		admin(nil, "target", "add", "box", "--env", "dev", "--login", "user", "--kubernetes", "--image", harness.TestImage)
		admin(nil, "grant", "alice", "--env", "dev")
	}
	setup()
	// The gate key the admin commands show is the Secret's.
	if gk, _ := os.ReadFile(filepath.Join(keys, "gate_key.pub")); !strings.HasPrefix(admin(nil, "gate-key"), strings.Join(strings.Fields(string(gk))[:2], " ")) {
		t.Errorf("gate-key is not the Secret's gate_key.pub %q", gk)
	}

	// Through the Service, on a port-forward that ends with its pod.
	forward := func() (port int, stop func()) {
		t.Helper()
		local := harness.FreePort(t)
		ctx, cancel := context.WithCancel(context.Background())
		pf := exec.CommandContext(ctx, filepath.Join(k.bin, "kubectl"), "--kubeconfig", filepath.Join(k.state, "admin.kubeconfig"),
			"-n", ns, "port-forward", "--address", "127.0.0.1", "svc/sshgate", strconv.Itoa(local)+":22")
		pfOut := &harness.Buffer{}
		pf.Stdout, pf.Stderr = pfOut, pfOut
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		stop = sync.OnceFunc(func() { cancel(); pf.Wait() })
		t.Cleanup(stop)
		if err := harness.WaitListening("127.0.0.1:"+strconv.Itoa(local), short, func() bool { return pf.ProcessState == nil }); err != nil {
			t.Fatalf("port-forward: %v: %s", err, pfOut.String())
		}
		return local, stop
	}

	// The host key the ssh client sees through the Service is the Secret's,
	// and so is the one the gate logged at start; the gate also logs the
	// namespace its targets' pods go to (kubernetes.namespace is unset: its
	// own), not "".
	checkPod := func(round string) {
		t.Helper()
		logs := k.must(t, "admin", nil, "-n", ns, "logs", "deploy/sshgate")
		if m := regexp.MustCompile(`host_key=(SHA256:\S+)`).FindStringSubmatch(logs); m == nil || m[1] != secretFP {
			t.Fatalf("%s: the gate logged host key %v, want the Secret's %s:\n%s", round, m, secretFP, logs)
		}
		if !strings.Contains(logs, `msg="kubernetes backend ready"`) || !regexp.MustCompile(`msg="kubernetes backend ready".* namespace=`+ns+`(\s|$)`).MatchString(logs) {
			t.Errorf("%s: the kubernetes backend did not log namespace=%s:\n%s", round, ns, logs)
		}
		local, stop := forward()
		defer stop()
		known := filepath.Join(t.TempDir(), "known_hosts")
		hk, _ := os.ReadFile(filepath.Join(keys, "ssh_host_ed25519_key.pub"))
		os.WriteFile(known, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n", local, strings.Join(strings.Fields(string(hk))[:2], " "))), 0o600)
		scan := harness.Run(exec.Command("ssh-keyscan", "-t", "rsa", "-p", strconv.Itoa(local), "127.0.0.1"), nil, short)
		scanned := filepath.Join(t.TempDir(), "scanned")
		os.WriteFile(scanned, []byte(scan.Stdout), 0o600)
		if fp := harness.Run(exec.Command("ssh-keygen", "-l", "-f", scanned), nil, short); !strings.Contains(fp.Stdout, secretRSAFP) {
			t.Errorf("%s: the RSA host key through the Service %q is not the Secret's %s", round, fp.Stdout, secretRSAFP)
		}
		alice := &harness.Client{Host: "127.0.0.1", Port: local, User: "alice", Key: key, KnownHosts: known,
			Opts: []string{"HostKeyAlgorithms=ssh-ed25519"}}
		t1 := time.Now()
		r := harness.Run(alice.SSHTo("box", nil, "echo hi from $(hostname); exit 3"), nil, short)
		if r.Code != 3 || !strings.HasPrefix(r.Stdout, "hi from ") {
			t.Fatalf("%s: through the Service: exit %d stdout %q stderr %q", round, r.Code, r.Stdout, r.Stderr)
		}
		t.Logf("%s: first command through the Service, cold pod: %s", round, time.Since(t1).Round(time.Millisecond))
		// The target's pod is in the gate's namespace (its service
		// account's), and gone once the connection is.
		if !harness.Eventually(30*time.Second, func() bool {
			out, err := k.run(context.Background(), "admin", nil, "-n", ns, "get", "pods", "-l", "sshgate.target=box", "-o", "name")
			return err == nil && strings.TrimSpace(string(out)) == ""
		}) {
			t.Errorf("%s: the target's pod was not removed", round)
		}
	}
	gatePod := func() string {
		t.Helper()
		return strings.TrimSpace(k.must(t, "admin", nil, "-n", ns, "get", "pods", "-l", "app.kubernetes.io/name=sshgate",
			"--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}"))
	}
	first := gatePod()
	checkPod("first pod")

	// A restarted pod starts on an empty data directory (an emptyDir): it
	// has none of the users, but the same host key, which it did not make.
	t2 := time.Now()
	k.must(t, "admin", nil, "-n", ns, "rollout", "restart", "deploy/sshgate")
	if _, err := k.run(context.Background(), "admin", nil, "-n", ns, "rollout", "status", "deploy/sshgate", "--timeout=55s"); err != nil {
		t.Fatalf("the restarted gate did not become ready: %v", err)
	}
	if !harness.Eventually(30*time.Second, func() bool { p := gatePod(); return p != "" && p != first && !strings.Contains(p, " ") }) {
		t.Fatalf("no new gate pod after the restart: %q (was %q)", gatePod(), first)
	}
	t.Logf("restart to Ready: %s", time.Since(t2).Round(time.Millisecond))
	setup()
	checkPod("restarted pod")
}

// kubeKeysConfig is the keys section of the shipped ConfigMap, which the
// test overlay's configuration repeats.
const kubeKeysConfig = `    keys:
      host_key_files:
      - /etc/sshgate-keys/ssh_host_ed25519_key
      - /etc/sshgate-keys/ssh_host_rsa_key
      gate_key_file: /etc/sshgate-keys/gate_key
`
