package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/gate"
	lifecycle "github.com/sshgate/sshgate/internal/target/container"
	"github.com/sshgate/sshgate/internal/target/kube"
)

// TestKubeColdStart: the engine's per-connection pod as the real cluster
// takes it, with the shipped role. It has no init container (whose exit
// the kubelet sees only on its next relist, up to a second, before it
// starts the main container): the agent's installer is the first
// container, hardened as the main one, its postStart hook copying the
// agent. And Start returns once the pod has a node, before its status
// says the main container runs (the kubelet's next relist), and an
// attached exec made right then reaches the main container: the engine
// tries it until the kubelet runs it.
func TestKubeColdStart(t *testing.T) {
	k := requireKube(t)
	harness.RequireDocker(t)
	if directMode {
		t.Skip("kubernetes targets need the gate")
	}
	w := newKubeWorld(t) // the shipped role applied, the agent image imported
	eng, err := kube.NewEngineFor(kube.EngineConfig{Namespace: kubeNS, AgentImage: kubeAgentImage(t, k), ImagePullPolicy: corev1.PullNever},
		filepath.Join(k.state, "gate.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	s, err := eng.Prepare(gate.Target{Name: "cold-" + w.tag, Kind: gate.KindKubernetes, Kubernetes: &gate.KubernetesSpec{Image: harness.TestImage}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	ref, err := eng.Create(ctx, lifecycle.CreateRequest{Spec: s, Suffix: w.tag, User: "65534:65534", Entrypoint: []string{"sleep", "600"},
		Labels: map[string]string{lifecycle.LabelGate: "cold-" + w.tag, lifecycle.LabelConn: "c1", lifecycle.LabelPer: "connection"}})
	if ref.ID != "" {
		defer eng.Remove(context.Background(), ref)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx, ref); err != nil {
		t.Fatal(err)
	}
	t.Logf("Start returned %s after the create", time.Since(t0).Round(time.Millisecond))
	var p corev1.Pod
	if err := json.Unmarshal([]byte(w.k.must(t, "admin", nil, "-n", kubeNS, "get", "pod", ref.Name, "-o", "json")), &p); err != nil {
		t.Fatal(err)
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "main" && cs.State.Running != nil {
			t.Errorf("Start returned once the status said the main container runs (%+v)", cs.State)
		}
	}
	if p.Spec.NodeName == "" {
		t.Error("Start returned before the pod had a node")
	}
	proc, err := eng.Exec(ctx, ref, lifecycle.ExecRequest{Cmd: []string{"echo", "hi"}, Attach: true})
	if err != nil {
		t.Fatalf("exec right after Start: %v", err)
	}
	out, _ := io.ReadAll(proc.Conn)
	proc.Conn.Close()
	t.Logf("the exec's output read %s after the create", time.Since(t0).Round(time.Millisecond))
	if string(out) != "hi\n" {
		t.Errorf("exec right after Start: %q", out)
	}

	if len(p.Spec.InitContainers) != 0 || len(p.Spec.Containers) != 2 || p.Spec.Containers[0].Name != "sshgate-agent" || p.Spec.Containers[1].Name != "main" {
		t.Fatalf("containers: %d init, %d; want none and the installer, then main", len(p.Spec.InitContainers), len(p.Spec.Containers))
	}
	in := p.Spec.Containers[0]
	if h := in.Lifecycle; h == nil || h.PostStart == nil || h.PostStart.Exec == nil || strings.Join(h.PostStart.Exec.Command, " ") != "/sshgate-agent --install /run/sshgate" ||
		strings.Join(in.Command, " ") != "/sshgate-agent --hold" {
		t.Errorf("installer: command %v lifecycle %+v", in.Command, in.Lifecycle)
	}
	sc := in.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("installer security context: %+v", sc)
	}
	if r := in.Resources; r.Requests.Memory().Value() > 16<<20 || r.Limits.Memory().Value() == 0 || r.Limits.Memory().Value() > 64<<20 || r.Limits.Cpu().IsZero() {
		t.Errorf("installer resources: %+v", r)
	}
	if p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restart policy %s", p.Spec.RestartPolicy)
	}
}
