package kube

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sshgate/sshgate/internal/gate"
	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

func newTestEngine(t *testing.T) (*Engine, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset()
	e, err := NewEngine(EngineConfig{Namespace: "pods", AgentImage: "sshgate/agent:1", ImagePullPolicy: corev1.PullNever}, nil, cs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, cs
}

func kt(spec gate.KubernetesSpec) gate.Target {
	return gate.Target{Name: "lab", Env: "dev", Kind: gate.KindKubernetes, Kubernetes: &spec}
}

func TestPrepare(t *testing.T) {
	e, _ := newTestEngine(t)
	for _, c := range []struct {
		spec gate.KubernetesSpec
		want string // "" ok, else a part of the user's line
	}{
		{gate.KubernetesSpec{Image: "busybox"}, ""},
		{gate.KubernetesSpec{Image: "busybox", User: "1000:1000", Per: "user", IdleTTL: "5m"}, ""},
		{gate.KubernetesSpec{Image: ""}, "no image is set"},
		{gate.KubernetesSpec{Image: "x", Namespace: "Bad_NS"}, "the namespace is invalid"},
		{gate.KubernetesSpec{Image: "x", User: "app"}, "the user must be numeric"},
		{gate.KubernetesSpec{Image: "x", Memory: -5, NanoCPUs: -1}, "the limits are invalid"},
		{gate.KubernetesSpec{Image: "x", Env: []string{"NOEQ"}}, "environment variable is invalid"},
		{gate.KubernetesSpec{Image: "x", Per: "forever"}, "the container mode is invalid"},
	} {
		s, err := e.Prepare(kt(c.spec))
		if c.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", c.spec, err)
			} else if settingsOf(s).namespace != "pods" {
				t.Errorf("%+v: namespace %q", c.spec, settingsOf(s).namespace)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "container for lab could not start: ") {
			t.Errorf("%+v: %v, want %q", c.spec, err, c.want)
		}
	}
	if _, err := e.Prepare(gate.Target{Name: "x", Kind: gate.KindDocker, Docker: &gate.DockerSpec{Image: "x"}}); err == nil {
		t.Error("a docker target was prepared")
	}
	a, _ := e.Prepare(kt(gate.KubernetesSpec{Image: "x", Memory: 64 << 20}))
	b, _ := e.Prepare(kt(gate.KubernetesSpec{Image: "x", Memory: 128 << 20}))
	if a.Key == b.Key {
		t.Error("different limits, same key")
	}
}

// TestPodSpec: the pod the engine submits is hardened, labelled, limited
// and gets the agent from its installer: the first container, hardened as
// the main one and read-only, asleep (--hold) once its postStart hook has
// copied the agent; no init container, whose exit the kubelet would see
// only on its next relist (up to 1 s) before starting the main container.
func TestPodSpec(t *testing.T) {
	e, cs := newTestEngine(t)
	s, err := e.Prepare(kt(gate.KubernetesSpec{Image: "busybox", Memory: 256 << 20, NanoCPUs: 500e6, Env: []string{"A=1"}}))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := e.Create(context.Background(), lifecycle.CreateRequest{
		Spec: s, Suffix: "abc123", User: "65534:65534", Entrypoint: []string{lifecycle.AgentMount, "--listen", "127.0.0.1:0"},
		Env:    []string{"HOME=", "A=1"},
		Labels: map[string]string{lifecycle.LabelGate: "g1", lifecycle.LabelUser: "alice@example.com", lifecycle.LabelConn: "c1"},
		Files: []lifecycle.File{
			{Path: lifecycle.DirMount + "/host_key", Mode: 0o400, UID: 65534, GID: 65534, Data: []byte("k")},
			{Path: lifecycle.DirMount + "/authorized_keys", Mode: 0o444, Data: []byte("a")},
			{Path: lifecycle.AgentMount, Mode: 0o555, Source: "/bin/agent"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ref.ID != "pods/sshgate-lab-abc123" {
		t.Fatalf("ref %+v", ref)
	}
	p, err := cs.CoreV1().Pods("pods").Get(context.Background(), "sshgate-lab-abc123", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sp := p.Spec
	if *sp.AutomountServiceAccountToken || sp.RestartPolicy != corev1.RestartPolicyNever || *sp.EnableServiceLinks {
		t.Errorf("pod spec: %+v", sp)
	}
	if psc := sp.SecurityContext; *psc.RunAsUser != 65534 || *psc.RunAsGroup != 65534 || !*psc.RunAsNonRoot || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context: %+v", psc)
	}
	for _, c := range append(sp.InitContainers, sp.Containers...) {
		sc := c.SecurityContext
		if *sc.AllowPrivilegeEscalation || *sc.Privileged || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("%s: security context %+v", c.Name, sc)
		}
		if c.ImagePullPolicy != corev1.PullNever {
			t.Errorf("%s: pull policy %s", c.Name, c.ImagePullPolicy)
		}
	}
	if len(sp.InitContainers) != 0 || len(sp.Containers) != 2 {
		t.Fatalf("init containers %d, containers %d; want 0 and 2", len(sp.InitContainers), len(sp.Containers))
	}
	m := sp.Containers[1]
	if m.Name != mainContainer || m.Image != "busybox" || m.Command[0] != lifecycle.AgentMount {
		t.Errorf("main: %s %v", m.Image, m.Command)
	}
	if lim := m.Resources.Limits; lim.Memory().Value() != 256<<20 || lim.Cpu().MilliValue() != 500 {
		t.Errorf("limits: %v", lim)
	}
	if len(m.Env) != 1 || m.Env[0].Name != "A" {
		t.Errorf("env: %v", m.Env)
	}
	init := sp.Containers[0]
	if init.Name != agentContainer || init.Image != "sshgate/agent:1" || strings.Join(init.Command, " ") != "/sshgate-agent --hold" || len(init.Env) != 2 {
		t.Errorf("installer: %s %s %v %v", init.Name, init.Image, init.Command, init.Env)
	}
	if h := init.Lifecycle; h == nil || h.PostStart == nil || h.PostStart.Exec == nil || h.PreStop != nil ||
		strings.Join(h.PostStart.Exec.Command, " ") != "/sshgate-agent --install /run/sshgate" {
		t.Errorf("installer hooks: %+v", h)
	}
	if sc := init.SecurityContext; !*sc.ReadOnlyRootFilesystem || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || sc.RunAsUser != nil {
		t.Errorf("installer security context: %+v", sc)
	}
	if r := init.Resources; r.Requests.Memory().Value() > 16<<20 || r.Requests.Cpu().MilliValue() > 10 ||
		r.Limits.Memory().Value() == 0 || r.Limits.Memory().Value() > 64<<20 || r.Limits.Cpu().MilliValue() == 0 {
		t.Errorf("installer resources: %+v", r)
	}
	if len(init.VolumeMounts) != 1 || init.VolumeMounts[0].MountPath != lifecycle.DirMount || init.VolumeMounts[0].ReadOnly {
		t.Errorf("installer mounts: %+v", init.VolumeMounts)
	}
	for _, vm := range m.VolumeMounts {
		if vm.Name == volumeName && !vm.ReadOnly {
			t.Errorf("main mounts the agent's volume writable: %+v", vm)
		}
	}
	if p.Annotations["kubectl.kubernetes.io/default-container"] != mainContainer {
		t.Errorf("annotations: %v", p.Annotations)
	}
	if init.Env[0].Name != "SSHGATE_FILE_host_key" || !strings.HasPrefix(init.Env[0].Value, "400:") {
		t.Errorf("host key env: %v", init.Env[0])
	}
	if p.Labels[lifecycle.LabelGate] != "g1" || !strings.HasPrefix(p.Labels[lifecycle.LabelUser], "h-") {
		t.Errorf("labels: %v", p.Labels)
	}
	// List gives the exact labels back, selecting on translated values.
	l, err := e.List(context.Background(), map[string]string{lifecycle.LabelGate: "g1", lifecycle.LabelUser: "alice@example.com"})
	if err != nil || len(l) != 1 || l[0].ID != ref.ID || l[0].Labels[lifecycle.LabelUser] != "alice@example.com" {
		t.Fatalf("list: %+v %v", l, err)
	}
	if l, _ := e.List(context.Background(), map[string]string{lifecycle.LabelGate: "other"}); len(l) != 0 {
		t.Errorf("list of another gate: %+v", l)
	}
	if err := e.Remove(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	if err := e.Remove(context.Background(), ref); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if st, err := e.Inspect(context.Background(), ref, metav1.Now().Time); err != nil || !st.Gone {
		t.Errorf("inspect after remove: %+v %v", st, err)
	}
}

func TestPodStarted(t *testing.T) {
	waiting := func(init bool, reason string) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: agentContainer, Image: "agent:1"}, {Name: mainContainer, Image: "x:1"}}}}
		cs := corev1.ContainerStatus{Name: mainContainer, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
		if init {
			cs.Name = agentContainer
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
		return p
	}
	for _, c := range []struct {
		name string
		pod  *corev1.Pod
		up   bool
		line string
		why  string
	}{
		{"image missing", waiting(false, "ErrImageNeverPull"), false, `container for lab could not start: image "x:1" not available on the cluster`, ""},
		{"agent image missing", waiting(true, "ErrImagePull"), false, `container for lab could not start: the agent image "agent:1" is not available on the cluster`, ""},
		{"crash loop", waiting(false, "CrashLoopBackOff"), false, "container for lab could not start: it keeps crashing (crash loop)", ""},
		{"creating", waiting(false, "ContainerCreating"), false, "", "ContainerCreating"},
		{"running", &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: mainContainer,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}, true, "", ""},
		{"exited", &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: mainContainer,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}}}}}, false, "container for lab could not start: it exited at start (exit code 3)", ""},
		{"no room", &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available: 1 Insufficient memory."}}}}, false, "container for lab could not start: the cluster has no room for it (unschedulable)", ""},
		{"unschedulable", &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: "node(s) had untolerated taint"}}}}, false, "", "unschedulable"},
		{"pending", &corev1.Pod{}, false, "", "it was not scheduled yet"},
		// The installer's postStart hook failed: the kubelet killed it and
		// started the main container without an agent, which failed too.
		{"install failed", &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: mainContainer, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "RunContainerError"}}},
			{Name: agentContainer, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "FailedPostStartHook"}}}}}},
			false, "container for lab could not start: its agent could not be installed (FailedPostStartHook, exit code 137)", ""},
		{"template init failed", &corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{
			{Name: "prep", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}}}},
			false, "container for lab could not start: its init container prep failed (exit code 1)", ""},
		// The main container runs while the installer is still seen
		// starting: up (its hook returned before the main one started).
		{"running beside the installer", &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: agentContainer, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			{Name: mainContainer, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}, true, "", ""},
	} {
		up, pe, why := podStarted("lab", c.pod)
		line := ""
		if pe != nil {
			line = pe.Public
		}
		if up != c.up || line != c.line || why != c.why {
			t.Errorf("%s: up %v line %q why %q; want %v %q %q", c.name, up, line, why, c.up, c.line, c.why)
		}
	}
}

func TestPodName(t *testing.T) {
	for in, want := range map[string]string{"lab": "sshgate-lab-x1", "Web_1.prod": "sshgate-web-1-prod-x1", "": "sshgate-target-x1",
		strings.Repeat("a", 80): "sshgate-" + strings.Repeat("a", 40) + "-x1"} {
		if got := PodName(in, "X1"); got != want {
			t.Errorf("PodName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAPIError(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	for _, c := range []struct {
		err  error
		want string
	}{
		{apierrors.NewForbidden(gr, "p", errors.New("User \"sshgate\" cannot create resource")), `the gate may not manage pods in namespace "ns"`},
		{apierrors.NewForbidden(gr, "p", errors.New("exceeded quota: q, requested: pods=1")), `the quota of namespace "ns" is exceeded`},
		{apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "ns"), `namespace "ns" does not exist`},
		{apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "p", nil), "the cluster refused the pod settings"},
		{apierrors.NewUnauthorized("no"), "the cluster refused the gate's credentials"},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, "the cluster is unreachable"},
		{context.DeadlineExceeded, "the container engine did not answer in time"},
	} {
		err := apiError("lab", "ns", "create pod", c.err)
		var pe *gate.PublicError
		if !errors.As(err, &pe) || pe.Public != "container for lab could not start: "+c.want {
			t.Errorf("%v: %v, want %q", c.err, err, c.want)
		}
	}
}

func TestDefaultNamespace(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, file, want string
	}{
		{"in cluster", write("ns", "gate-ns\n"), "gate-ns"},
		{"not in cluster", filepath.Join(dir, "absent"), "default"},
		{"empty file", write("empty", ""), "default"},
		{"not a DNS label", write("bad", "Bad_NS"), "default"},
	} {
		if got := DefaultNamespace(c.file); got != c.want {
			t.Errorf("%s: DefaultNamespace = %q, want %q", c.name, got, c.want)
		}
	}
}
