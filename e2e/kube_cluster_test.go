package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// kubeCluster is the private test cluster of scripts/k8s/up.sh.
type kubeCluster struct {
	state, bin string
}

// requireKube returns the cluster up.sh started, or skips the test with a
// message saying how to start one. With SSHGATE_K8S_REQUIRED=1 (set by
// scripts/test-setup.sh once the cluster came up) a missing cluster fails.
func requireKube(t *testing.T) *kubeCluster {
	t.Helper()
	state := os.Getenv("K8S_STATE")
	if state == "" {
		state = "/var/lib/sshgate-k8s"
	}
	why := ""
	bin, err := os.ReadFile(filepath.Join(state, "bin"))
	k := &kubeCluster{state: state, bin: strings.TrimSpace(string(bin))}
	if err != nil {
		why = "no cluster state in " + state
	} else if _, err := k.run(context.Background(), "admin", nil, "get", "--raw", "/readyz"); err != nil {
		why = "the cluster does not answer: " + err.Error()
	}
	if why == "" {
		return k
	}
	why = "kubernetes: " + why + " (start it with scripts/k8s/up.sh)"
	if os.Getenv("SSHGATE_K8S_REQUIRED") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
	return nil
}

// run runs kubectl as who ("admin" or "gate") and returns its stdout; an
// error carries the exit status and stderr.
func (k *kubeCluster) run(ctx context.Context, who string, stdin []byte, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	args = append([]string{"--kubeconfig", filepath.Join(k.state, who+".kubeconfig"), "--request-timeout=30s"}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(k.bin, "kubectl"), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args[3:], " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

func (k *kubeCluster) must(t *testing.T, who string, stdin []byte, args ...string) string {
	t.Helper()
	out, err := k.run(context.Background(), who, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// kubePod is a hardened pod as the gate will make them.
func kubePod(ns, name, image string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels: {sshgate.gate: e2e}
spec:
  automountServiceAccountToken: false
  restartPolicy: Never
  enableServiceLinks: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    command: ["/bin/sleep", "3600"]
    resources:
      requests: {cpu: 10m, memory: 16Mi}
      limits: {cpu: 500m, memory: 128Mi}
    securityContext:
      runAsUser: 65534
      runAsGroup: 65534
      runAsNonRoot: true
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
      seccompProfile: {type: RuntimeDefault}
`, name, ns, image))
}

// TestKubeClusterRBAC checks the shipped RBAC (dist/kubernetes/rbac.yaml)
// against the real cluster: the gate's user may manage pods and exec in the
// target namespace and nothing else, and an exec stream through the API
// server carries bytes exactly and the exit status of the command.
func TestKubeClusterRBAC(t *testing.T) {
	k := requireKube(t)
	rbac, err := os.ReadFile("../dist/kubernetes/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k.must(t, "admin", rbac, "apply", "-f", "-")

	// Least privilege, as the API server's authorizer answers it.
	for _, c := range []struct {
		verb, res, ns string
		want          string
	}{
		{"create", "pods", "sshgate-pods", "yes"},
		{"delete", "pods", "sshgate-pods", "yes"},
		{"create", "pods/exec", "sshgate-pods", "yes"},
		{"create", "pods", "default", "no"},
		{"get", "secrets", "sshgate-pods", "no"},
		{"create", "pods/attach", "sshgate-pods", "no"},
		{"get", "pods/log", "sshgate-pods", "no"},
		{"list", "nodes", "", "no"},
		{"create", "serviceaccounts/token", "sshgate-pods", "no"},
	} {
		// "pods/exec" would read as the pod named exec: a subresource
		// is a flag of its own.
		res, sub, _ := strings.Cut(c.res, "/")
		args := []string{"auth", "can-i", c.verb, res}
		if sub != "" {
			args = append(args, "--subresource", sub)
		}
		if c.ns != "" {
			args = append(args, "-n", c.ns)
		}
		out, _ := k.run(context.Background(), "gate", nil, args...) // "no" exits 1
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("gate may %s %s in %q: %q, want %q", c.verb, c.res, c.ns, got, c.want)
		}
	}

	// Without the role: one clear refusal from the API server.
	_, err = k.run(context.Background(), "gate", kubePod("default", "e2e-denied", "sshgate-test/busybox:latest"), "-n", "default", "create", "-f", "-")
	if err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("pod create in default without a role: %v, want forbidden", err)
	}

	// With it: a hardened pod, exec byte-exact both ways, exit status.
	name := "e2e-rbac-" + strings.ToLower(rand.Text()[:8])
	t.Cleanup(func() {
		k.run(context.Background(), "admin", nil, "-n", "sshgate-pods", "delete", "pod", name, "--grace-period=0", "--force", "--ignore-not-found")
	})
	t0 := time.Now()
	k.must(t, "gate", kubePod("sshgate-pods", name, "sshgate-test/busybox:latest"), "create", "-f", "-")
	k.must(t, "gate", nil, "-n", "sshgate-pods", "wait", "--for=condition=Ready", "pod/"+name, "--timeout=60s")
	t.Logf("pod create to Ready: %s", time.Since(t0).Round(time.Millisecond))

	payload := make([]byte, 1<<20)
	rand.Read(payload)
	out := k.must(t, "gate", payload, "-n", "sshgate-pods", "exec", "-i", name, "--", "/bin/cat")
	if !bytes.Equal([]byte(out), payload) {
		t.Fatalf("exec echoed %d bytes, not the %d sent", len(out), len(payload))
	}
	if id := k.must(t, "gate", nil, "-n", "sshgate-pods", "exec", name, "--", "/bin/sh", "-c", "id -u"); strings.TrimSpace(id) != "65534" {
		t.Errorf("pod runs as uid %q, want 65534", id)
	}
	_, err = k.run(context.Background(), "gate", nil, "-n", "sshgate-pods", "exec", name, "--", "/bin/sh", "-c", "exit 7")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("exec exit 7: %v", err)
	}
	// No route out of the pod: its network is an isolated bridge.
	if routes := k.must(t, "gate", nil, "-n", "sshgate-pods", "exec", name, "--", "/bin/sh", "-c", "ip route"); strings.Contains(routes, "default") {
		t.Errorf("pod has a default route:\n%s", routes)
	}
	k.must(t, "gate", nil, "-n", "sshgate-pods", "delete", "pod", name, "--wait=true", "--timeout=60s")
	if left := k.must(t, "gate", nil, "-n", "sshgate-pods", "get", "pods", "-l", "sshgate.gate=e2e", "-o", "name"); strings.Contains(left, name) {
		t.Errorf("pod left after delete: %s", left)
	}
}

// TestKubeClusterMissingImage: a pod whose image is not on the node (and is
// never pulled) reports ErrImageNeverPull within a bounded time: the state
// the kubernetes engine turns into its one line for the user.
func TestKubeClusterMissingImage(t *testing.T) {
	k := requireKube(t)
	rbac, err := os.ReadFile("../dist/kubernetes/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k.must(t, "admin", rbac, "apply", "-f", "-")
	name := "e2e-noimg-" + strings.ToLower(rand.Text()[:8])
	t.Cleanup(func() {
		k.run(context.Background(), "admin", nil, "-n", "sshgate-pods", "delete", "pod", name, "--grace-period=0", "--force", "--ignore-not-found")
	})
	k.must(t, "gate", kubePod("sshgate-pods", name, "sshgate-test/no-such-image:1"), "create", "-f", "-")
	var reason string
	ok := harness.Eventually(30*time.Second, func() bool {
		out, err := k.run(context.Background(), "gate", nil, "-n", "sshgate-pods", "get", "pod", name,
			"-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}")
		reason = string(out)
		return err == nil && reason != "" && reason != "ContainerCreating"
	})
	if !ok || reason != "ErrImageNeverPull" {
		t.Fatalf("waiting reason %q, want ErrImageNeverPull", reason)
	}
}
