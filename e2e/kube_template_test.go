package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// Pod templates and root inside against the real cluster: a template's
// settings reach the pod while the gate's hold, the API server judges a
// template at `target add` (server-side dry run), and --root-inside is
// refused on a cluster whose runtime has no user namespaces.

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKubePodTemplate(t *testing.T) {
	w := newKubeWorld(t)
	tmpl := writeFile(t, "lab.yaml", `apiVersion: v1
kind: Pod
metadata:
  name: copied-from-somewhere
  labels: {team: lab}
  annotations: {owner: ops}
spec:
  nodeSelector: {kubernetes.io/hostname: localhost}
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: main
    workingDir: /data
    env: [{name: FROM_TEMPLATE, value: yes-it-is}]
    volumeMounts: [{name: data, mountPath: /data}]
    securityContext: {readOnlyRootFilesystem: true}
`)
	name := "tmpl-" + w.tag
	out := w.gate.Admin(t, "target", "add", name, "--env", "dev", "--login", "user", "--kubernetes", "--image", harness.TestImage,
		"--pod-template", tmpl, "--per", "user", "--idle-ttl", "5m", "--config", w.cfg)
	if !strings.Contains(out, "--pod-template "+tmpl+": accepted by the cluster (server-side dry run)") {
		t.Errorf("target add: %q", out)
	}
	if pods := w.pods(t, name); len(pods) != 0 {
		t.Errorf("the dry run left pods: %v", pods)
	}
	w.gate.Admin(t, "grant", "alice", "--target", name)
	r := harness.Run(w.alice.SSHTo(name, nil, "echo $FROM_TEMPLATE; readlink /proc/1/cwd; touch /data/x && echo data-ok; touch /x 2>/dev/null || echo ro-root; id -u; grep CapEff /proc/self/status"), nil, short)
	if r.Code != 0 {
		t.Fatalf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"yes-it-is\n/data\ndata-ok\nro-root\n65534\n", "CapEff:\t0000000000000000"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("want %q in %q", want, r.Stdout)
		}
	}
	got := w.k.must(t, "admin", nil, "-n", kubeNS, "get", "pods", "-l", "sshgate.target="+name,
		"-o", `jsonpath={.items[0].metadata.labels.team} {.items[0].metadata.annotations.owner} {.items[0].spec.nodeSelector} {.items[0].spec.containers[0].name} {.items[0].spec.automountServiceAccountToken}`)
	if got != `lab ops {"kubernetes.io/hostname":"localhost"} sshgate-agent false` {
		t.Errorf("pod: %q", got)
	}
	if err := w.gate.Stop(); err != nil {
		t.Logf("stop gate: %v", err)
	}
	w.waitNoPods(t, name)
}

func TestKubePodTemplateRefused(t *testing.T) {
	w := newKubeWorld(t)
	for _, c := range []struct {
		name, body, want string
	}{
		// Only the API server knows these: validation, then admission.
		{"op.yaml", "spec:\n  tolerations: [{key: k, operator: Sometimes}]\n", "the cluster refuses the pod: "},
		{"prio.yaml", "spec: {priorityClassName: no-such-class}\n", "no-such-class"},
		// The gate's own rules, before the cluster is asked.
		{"host.yaml", "spec: {hostNetwork: true}\n", "spec.hostNetwork: the node's network is not allowed (only with --allow-host-access)"},
		{"notyaml.yaml", "spec: [\n", "not YAML"},
	} {
		f := writeFile(t, c.name, c.body)
		_, se, code := w.gate.AdminResult("target", "add", "bad-"+w.tag, "--env", "dev", "--kubernetes", "--image", harness.TestImage,
			"--pod-template", f, "--config", w.cfg)
		if code != 2 || !strings.Contains(se, "--pod-template "+f+": ") || !strings.Contains(se, c.want) {
			t.Errorf("%s: exit %d stderr %q, want %q", c.name, code, se, c.want)
		}
	}
	if out := w.gate.Admin(t, "target", "list"); strings.Contains(out, "bad-"+w.tag) {
		t.Errorf("a refused target was added: %s", out)
	}
}

// TestKubeRootInsideRefused: this cluster's containerd (1.6) runs no pods
// in user namespaces: `target add --root-inside` says so when it may ask
// the nodes (the admin's kubeconfig), and a pod asking for one does not
// start, with one line naming the likely cause.
func TestKubeRootInsideRefused(t *testing.T) {
	w := newKubeWorld(t)
	nodes := w.k.must(t, "admin", nil, "get", "nodes", "-o", "jsonpath={.items[*].status.runtimeHandlers}")
	if strings.Contains(nodes, `"userNamespaces":true`) {
		t.Skipf("this cluster runs pods in user namespaces: %s", nodes)
	}
	t.Logf("runtime handlers: %s", nodes)
	admin := writeFile(t, "admin.yaml", strings.Replace(mustRead(t, w.cfg), filepath.Join(w.k.state, "gate.kubeconfig"), filepath.Join(w.k.state, "admin.kubeconfig"), 1))
	name := "root-" + w.tag
	_, se, code := w.gate.AdminResult("target", "add", name, "--env", "dev", "--kubernetes", "--image", harness.TestImage, "--root-inside", "--config", admin)
	if code != 2 || !strings.Contains(se, "--root-inside: no node of the cluster runs pods in user namespaces") {
		t.Fatalf("target add (admin): exit %d stderr %q", code, se)
	}
	// With the gate's role the nodes cannot be asked: added, refused when
	// the pod does not start.
	out := w.gate.Admin(t, "target", "add", name, "--env", "dev", "--login", "user", "--kubernetes", "--image", harness.TestImage, "--root-inside", "--config", w.cfg)
	if !strings.Contains(out, "could not ask the nodes") {
		t.Errorf("target add (gate): %q", out)
	}
	w.gate.Admin(t, "grant", "alice", "--target", name)
	t0 := time.Now()
	r := harness.Run(w.alice.SSHTo(name, nil, "id -u"), nil, 2*time.Minute)
	want := fmt.Sprintf("container for %s could not start: ", name)
	if r.Code == 0 || !strings.Contains(r.Stderr, want) || !strings.Contains(r.Stderr, "hostUsers: false") || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
		t.Errorf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("refused after %s: %s", time.Since(t0).Round(time.Millisecond), strings.TrimSpace(r.Stderr))
	ev, _ := w.k.run(context.Background(), "admin", nil, "-n", kubeNS, "get", "events", "--field-selector", "reason=FailedCreatePodSandBox", "-o", "jsonpath={.items[*].message}")
	t.Logf("kubelet events: %.300s", ev)
	w.waitNoPods(t, name)
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
