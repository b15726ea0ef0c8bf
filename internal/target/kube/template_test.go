package kube

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sshgate/sshgate/internal/gate"
	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

func TestParsePodTemplate(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     string // "" ok, else part of the error
	}{
		{"pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: x, labels: {team: a}}\nspec:\n  nodeSelector: {disk: ssd}\n  containers: [{name: main, image: busybox}]\n", ""},
		{"podtemplate", "apiVersion: v1\nkind: PodTemplate\ntemplate:\n  spec: {tolerations: [{key: k, operator: Exists}]}\n", ""},
		{"bare", "metadata: {labels: {a: b}}\nspec: {priorityClassName: low}\n", ""},
		{"json", `{"spec":{"nodeName":"n1"}}`, ""},
		{"leading separator", "---\nspec: {nodeName: n1}\n", ""},
		{"empty", "", "it is empty"},
		{"comment only", "# nothing\n", "it is empty"},
		{"not yaml", "spec: [unclosed\n", "not YAML"},
		{"scalar", "hello\n", "not a YAML mapping"},
		{"list", "- a\n- b\n", "not a YAML mapping"},
		{"two docs", "spec: {}\n---\nspec: {}\n", "2 YAML documents"},
		{"wrong kind", "apiVersion: apps/v1\nkind: Deployment\nspec: {}\n", `kind "Deployment"`},
		{"wrong version", "apiVersion: v2\nkind: Pod\nspec: {}\n", `apiVersion "v2"`},
		{"version without kind", "apiVersion: v1\nspec: {}\n", "without a kind"},
		{"unknown field", "spec:\n  containers: [{name: main, imag: busybox}]\n", `unknown field "spec.containers[0].imag"`},
		{"case differs", "spec: {NodeName: n1}\n", `unknown field "spec.NodeName"`},
		{"duplicate key", "spec: {nodeName: a, nodeName: b}\n", "nodeName"},
		{"wrong type", "spec: {hostNetwork: maybe}\n", "hostNetwork"},
		{"bad quantity", "spec:\n  containers: [{name: main, resources: {limits: {memory: lots}}}]\n", "quantities must match"},
		{"too large", "spec: {nodeName: " + strings.Repeat("a", MaxTemplateSize) + "}\n", "larger than"},
	} {
		_, err := ParsePodTemplate([]byte(c.in))
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func mustTemplate(t *testing.T, y string) *corev1.PodTemplateSpec {
	t.Helper()
	tp, err := ParsePodTemplate([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func TestCheckTemplate(t *testing.T) {
	for _, c := range []struct {
		name, in string
		rules    TemplateRules
		want     string // "" ok, else part of the error
	}{
		{"plain", "spec: {nodeSelector: {a: b}, tolerations: [{key: k, operator: Exists}]}", TemplateRules{}, ""},
		{"net bind", "spec:\n  containers: [{name: main, securityContext: {capabilities: {add: [NET_BIND_SERVICE]}}}]", TemplateRules{}, ""},
		{"stricter", "spec:\n  securityContext: {runAsNonRoot: true, seccompProfile: {type: Localhost, localhostProfile: p.json}}\n  containers: [{name: main, securityContext: {readOnlyRootFilesystem: true}}]", TemplateRules{}, ""},
		{"privileged", "spec:\n  containers: [{name: main, securityContext: {privileged: true}}]", TemplateRules{}, "spec.containers[0].securityContext.privileged: a privileged container is not allowed (only with --allow-host-access)"},
		{"privileged allowed", "spec:\n  containers: [{name: main, securityContext: {privileged: true}}]", TemplateRules{AllowHost: true}, ""},
		{"hostPath", "spec:\n  volumes: [{name: h, hostPath: {path: /}}]", TemplateRules{}, "spec.volumes[0].hostPath"},
		{"hostNetwork", "spec: {hostNetwork: true}", TemplateRules{}, "spec.hostNetwork"},
		{"hostPID", "spec: {hostPID: true}", TemplateRules{}, "spec.hostPID"},
		{"hostIPC", "spec: {hostIPC: true}", TemplateRules{}, "spec.hostIPC"},
		{"sys_admin", "spec:\n  containers: [{name: main, securityContext: {capabilities: {add: [SYS_ADMIN]}}}]", TemplateRules{}, `capability "SYS_ADMIN"`},
		{"escalation", "spec:\n  containers: [{name: main, securityContext: {allowPrivilegeEscalation: true}}]", TemplateRules{}, "allowPrivilegeEscalation"},
		{"unconfined", "spec:\n  securityContext: {seccompProfile: {type: Unconfined}}", TemplateRules{}, "seccompProfile: Unconfined"},
		{"unmasked", "spec:\n  containers: [{name: main, securityContext: {procMount: Unmasked}}]", TemplateRules{}, "procMount"},
		{"root sidecar", "spec:\n  containers: [{name: main}, {name: side, image: x, securityContext: {runAsUser: 0}}]", TemplateRules{}, "spec.containers[1].securityContext.runAsUser"},
		{"root sidecar in userns", "spec:\n  hostUsers: false\n  containers: [{name: main}, {name: side, image: x, securityContext: {runAsUser: 0}}]", TemplateRules{}, ""},
		{"command", "spec:\n  containers: [{name: main, command: [sh]}]", TemplateRules{}, "spec.containers[0].command"},
		{"restart", "spec: {restartPolicy: Always}", TemplateRules{}, "spec.restartPolicy"},
		{"hostname", "spec: {hostname: h}", TemplateRules{}, "spec.hostname"},
		{"gate label", "metadata: {labels: {sshgate.gate: x}}", TemplateRules{}, `"sshgate.gate" is the gate's own label`},
		{"gate annotation", "metadata: {annotations: {sshgate.io/labels: x}}", TemplateRules{}, "gate's own annotation"},
		{"namespace", "metadata: {namespace: other}", TemplateRules{Namespace: "pods"}, `"other" differs`},
		{"same namespace", "metadata: {namespace: pods}", TemplateRules{Namespace: "pods"}, ""},
		{"gate volume", "spec:\n  volumes: [{name: sshgate, emptyDir: {}}]", TemplateRules{}, `"sshgate" is the gate's own volume`},
		{"agent container", "spec:\n  initContainers: [{name: sshgate-agent, image: x}]", TemplateRules{}, "gate's own container"},
		{"agent mount", "spec:\n  containers: [{name: main, volumeMounts: [{name: v, mountPath: /run/sshgate/x}]}]", TemplateRules{}, "where the gate puts its agent"},
		{"token default sa", "spec: {automountServiceAccountToken: true}", TemplateRules{}, "automountServiceAccountToken"},
		{"token own sa", "spec: {automountServiceAccountToken: true, serviceAccountName: lab}", TemplateRules{}, ""},
		{"two containers no main", "spec:\n  containers: [{name: a}, {name: b}]", TemplateRules{}, "none named"},
		{"ephemeral", "spec:\n  ephemeralContainers: [{name: e, image: x}]", TemplateRules{}, "ephemeralContainers"},
		{"user conflict", "spec:\n  securityContext: {runAsUser: 1000}", TemplateRules{User: "2000"}, "--user says 2000"},
		{"user agrees", "spec:\n  securityContext: {runAsUser: 1000}", TemplateRules{User: "1000:1000"}, ""},
		{"nonroot vs root inside", "spec:\n  securityContext: {runAsNonRoot: true}", TemplateRules{RootInside: true}, "runAsNonRoot"},
		{"hostUsers vs root inside", "spec: {hostUsers: true}", TemplateRules{RootInside: true}, "spec.hostUsers"},
		{"several", "spec: {hostNetwork: true, hostPID: true}", TemplateRules{}, "spec.hostPID"},
	} {
		err := CheckTemplate(mustTemplate(t, c.in), c.rules)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// templatePod is the pod the engine submits for a target with template y.
func templatePod(t *testing.T, spec gate.KubernetesSpec, y string) *corev1.Pod {
	t.Helper()
	e, cs := newTestEngine(t)
	if y != "" {
		js, err := TemplateJSON(mustTemplate(t, y))
		if err != nil {
			t.Fatal(err)
		}
		spec.PodTemplate = js
	}
	s, err := e.Prepare(kt(spec))
	if err != nil {
		t.Fatal(err)
	}
	user := s.User
	if user == "" {
		user = "65534:65534"
	}
	ref, err := e.Create(context.Background(), lifecycle.CreateRequest{Spec: s, Suffix: "t1", User: user,
		Entrypoint: []string{lifecycle.AgentMount}, Env: []string{"HOME=", "A=gate"},
		Labels: map[string]string{lifecycle.LabelGate: "g1", lifecycle.LabelTarget: "lab"}})
	if err != nil {
		t.Fatal(err)
	}
	ns, name, _ := splitID(ref.ID)
	p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTemplateMerge: what the template sets reaches the pod; what the gate
// must set wins; security is the stricter of the two.
func TestTemplateMerge(t *testing.T) {
	p := templatePod(t, gate.KubernetesSpec{Image: "busybox", Memory: 128 << 20}, `
apiVersion: v1
kind: Pod
metadata:
  name: ignored
  labels: {team: lab}
  annotations: {note: hi}
spec:
  restartPolicy: Never
  nodeSelector: {disk: ssd}
  tolerations: [{key: k, operator: Exists}]
  priorityClassName: low
  serviceAccountName: lab
  securityContext: {fsGroup: 2000, runAsNonRoot: true}
  volumes: [{name: data, emptyDir: {}}]
  initContainers: [{name: prep, image: busybox, securityContext: {readOnlyRootFilesystem: false}}]
  containers:
  - name: main
    image: other
    imagePullPolicy: IfNotPresent
    workingDir: /work
    env: [{name: A, value: template}, {name: B, value: template}]
    volumeMounts: [{name: data, mountPath: /data}]
    ports: [{containerPort: 8080}]
    resources:
      requests: {memory: 1Gi, cpu: 50m}
      limits: {memory: 2Gi, cpu: "2"}
    securityContext: {readOnlyRootFilesystem: true, runAsUser: 1000, capabilities: {drop: [NET_RAW]}}
  - name: side
    image: busybox
`)
	if p.Labels["team"] != "lab" || p.Labels[lifecycle.LabelTarget] != "lab" || p.Annotations["note"] != "hi" || p.Annotations[labelsAnnotation] == "" {
		t.Errorf("metadata: %v %v", p.Labels, p.Annotations)
	}
	if p.Name != "sshgate-lab-t1" || p.Namespace != "pods" {
		t.Errorf("name %s/%s", p.Namespace, p.Name)
	}
	s := p.Spec
	if s.NodeSelector["disk"] != "ssd" || len(s.Tolerations) != 1 || s.PriorityClassName != "low" || s.ServiceAccountName != "lab" {
		t.Errorf("scheduling: %+v", s)
	}
	if *s.AutomountServiceAccountToken || s.RestartPolicy != corev1.RestartPolicyNever || s.Hostname != "lab" {
		t.Errorf("gate's fields: automount %v restart %s hostname %q", *s.AutomountServiceAccountToken, s.RestartPolicy, s.Hostname)
	}
	psc := s.SecurityContext
	if *psc.FSGroup != 2000 || !*psc.RunAsNonRoot || *psc.RunAsUser != 1000 || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security: %+v", psc)
	}
	if len(s.Volumes) != 2 || s.Volumes[0].Name != volumeName || s.Volumes[1].Name != "data" {
		t.Errorf("volumes: %+v", s.Volumes)
	}
	if len(s.InitContainers) != 1 || s.InitContainers[0].Name != "prep" {
		t.Fatalf("init containers: %+v", s.InitContainers)
	}
	if len(s.Containers) != 3 || s.Containers[0].Name != agentContainer || s.Containers[1].Name != mainContainer || s.Containers[2].Name != "side" {
		t.Fatalf("containers: %+v", s.Containers)
	}
	for _, c := range append(append([]corev1.Container{}, s.InitContainers...), s.Containers...) {
		sc := c.SecurityContext
		if sc == nil || *sc.Privileged || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
			sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: security %+v", c.Name, sc)
		}
	}
	m := s.Containers[1]
	if m.Image != "busybox" || m.Command[0] != lifecycle.AgentMount || m.WorkingDir != "/work" || len(m.Ports) != 1 || m.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("main: image %s command %v workdir %q ports %v pull %s", m.Image, m.Command, m.WorkingDir, m.Ports, m.ImagePullPolicy)
	}
	if !*m.SecurityContext.ReadOnlyRootFilesystem || m.SecurityContext.RunAsUser != nil {
		t.Errorf("main security: %+v", m.SecurityContext)
	}
	env := map[string]string{}
	for _, e := range m.Env {
		env[e.Name] = e.Value
	}
	if env["A"] != "gate" || env["B"] != "template" || len(m.Env) != 2 {
		t.Errorf("env: %v", m.Env)
	}
	if len(m.VolumeMounts) != 3 || m.VolumeMounts[2].MountPath != "/data" {
		t.Errorf("mounts: %v", m.VolumeMounts)
	}
	// --memory wins over the template's limit, the request is clamped to
	// it; no --cpus: the template's CPU limit and request stay.
	r := m.Resources
	if r.Limits.Memory().Value() != 128<<20 || r.Requests.Memory().Value() != 128<<20 || r.Limits.Cpu().MilliValue() != 2000 || r.Requests.Cpu().MilliValue() != 50 {
		t.Errorf("resources: %v", r)
	}
}

// TestTemplateTokenAndHost: a token only for a named account, host access
// only when allowed.
func TestTemplateTokenAndHost(t *testing.T) {
	p := templatePod(t, gate.KubernetesSpec{Image: "busybox"}, "spec: {automountServiceAccountToken: true, serviceAccountName: lab}")
	if !*p.Spec.AutomountServiceAccountToken {
		t.Error("the template's token for its own account was dropped")
	}
	p = templatePod(t, gate.KubernetesSpec{Image: "busybox", AllowHost: true}, "spec:\n  hostNetwork: true\n  containers: [{name: main, securityContext: {privileged: true}}]")
	if !p.Spec.HostNetwork || !*p.Spec.Containers[1].SecurityContext.Privileged {
		t.Error("allowed host access was not applied")
	}
	e, _ := newTestEngine(t)
	js, _ := TemplateJSON(mustTemplate(t, "spec: {hostNetwork: true}"))
	if _, err := e.Prepare(kt(gate.KubernetesSpec{Image: "x", PodTemplate: js})); err == nil || !strings.Contains(err.Error(), "its pod template is invalid (spec.hostNetwork") {
		t.Errorf("a stored template breaking the rules: %v", err)
	}
}

// TestTemplateImageAndUser: the template's image and user apply when the
// flags do not say.
func TestTemplateImageAndUser(t *testing.T) {
	p := templatePod(t, gate.KubernetesSpec{}, "spec:\n  securityContext: {runAsUser: 1000, runAsGroup: 1001}\n  containers: [{name: app, image: registry.local/app:1}]")
	m := p.Spec.Containers[1]
	if m.Image != "registry.local/app:1" || m.Name != mainContainer {
		t.Errorf("main %s %s", m.Name, m.Image)
	}
	if psc := p.Spec.SecurityContext; *psc.RunAsUser != 1000 || *psc.RunAsGroup != 1001 || !*psc.RunAsNonRoot {
		t.Errorf("user: %+v", psc)
	}
}

// TestRootInside: the pod runs as root in its own user namespace, with the
// runtime's default capabilities; the lifecycle calls it remapped.
func TestRootInside(t *testing.T) {
	p := templatePod(t, gate.KubernetesSpec{Image: "busybox", RootInside: true}, "")
	if p.Spec.HostUsers == nil || *p.Spec.HostUsers {
		t.Fatalf("hostUsers: %v", p.Spec.HostUsers)
	}
	if psc := p.Spec.SecurityContext; *psc.RunAsUser != 0 || *psc.RunAsNonRoot {
		t.Errorf("pod security: %+v", psc)
	}
	m := p.Spec.Containers[1].SecurityContext
	if m.Capabilities != nil || *m.Privileged || *m.AllowPrivilegeEscalation {
		t.Errorf("main security: %+v", m)
	}
	if c := p.Spec.Containers[0].SecurityContext.Capabilities; c == nil || c.Drop[0] != "ALL" {
		t.Errorf("installer capabilities: %+v", c)
	}
	e, _ := newTestEngine(t)
	s, err := e.Prepare(kt(gate.KubernetesSpec{Image: "busybox", RootInside: true}))
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := e.User(context.Background(), s); !info.Remapped || !s.RootInside || s.User != "0:0" {
		t.Errorf("user info %+v, spec user %q", info, s.User)
	}
	if _, err := e.Prepare(kt(gate.KubernetesSpec{Image: "busybox", RootInside: true, User: "1000"})); err == nil {
		t.Error("root inside with user 1000 was prepared")
	}
}

// FuzzPodTemplate: parsing never panics, and what parses and passes the
// rules merges into a pod whose security the template cannot loosen.
func FuzzPodTemplate(f *testing.F) {
	for _, s := range []string{
		"spec: {nodeSelector: {a: b}}",
		"apiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: main, image: x, securityContext: {privileged: true}}]",
		"apiVersion: v1\nkind: PodTemplate\ntemplate: {spec: {hostUsers: false}}",
		"spec:\n  containers: [{name: main}, {name: s, image: y, securityContext: {capabilities: {add: [NET_BIND_SERVICE]}}}]",
		"---\nspec: {}\n---\nspec: {}",
		"{\"spec\":{\"volumes\":[{\"name\":\"h\",\"hostPath\":{\"path\":\"/\"}}]}}",
	} {
		f.Add([]byte(s), false)
	}
	e, err := NewEngine(EngineConfig{Namespace: "pods", AgentImage: "a"}, nil, fake.NewClientset())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, allowHost bool) {
		tp, err := ParsePodTemplate(data)
		if err != nil {
			return
		}
		if CheckTemplate(tp, TemplateRules{Namespace: "pods", AllowHost: allowHost}) != nil {
			return
		}
		js, err := TemplateJSON(tp)
		if err != nil {
			t.Fatal(err)
		}
		s, err := e.Prepare(kt(gate.KubernetesSpec{Image: "x", PodTemplate: js, AllowHost: allowHost}))
		if err != nil {
			return // a user that is not numeric, etc.
		}
		p, err := e.pod(settingsOf(s), "p", lifecycle.CreateRequest{Spec: s, User: "1000", Entrypoint: []string{lifecycle.AgentMount}, Labels: map[string]string{lifecycle.LabelGate: "g"}})
		if err != nil {
			t.Fatal(err)
		}
		if p.Spec.Containers[0].Name != agentContainer || p.Spec.Containers[0].Lifecycle.PostStart == nil ||
			p.Spec.Containers[1].Name != mainContainer || p.Spec.Containers[1].Command[0] != lifecycle.AgentMount {
			t.Fatalf("agent injection lost: %+v", p.Spec)
		}
		if p.Labels[lifecycle.LabelGate] != "g" || p.Spec.RestartPolicy != corev1.RestartPolicyNever || p.Namespace != "pods" {
			t.Fatalf("gate fields lost: %v %s", p.Labels, p.Spec.RestartPolicy)
		}
		if allowHost {
			return
		}
		if p.Spec.HostNetwork || p.Spec.HostPID || p.Spec.HostIPC {
			t.Fatal("host namespaces")
		}
		for _, v := range p.Spec.Volumes {
			if v.HostPath != nil {
				t.Fatal("hostPath")
			}
		}
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			sc := c.SecurityContext
			if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || len(sc.Capabilities.Drop) == 0 || sc.Capabilities.Drop[0] != "ALL" {
				t.Fatalf("%s: security %+v", c.Name, sc)
			}
			for _, a := range sc.Capabilities.Add {
				if strings.TrimPrefix(strings.ToUpper(string(a)), "CAP_") != "NET_BIND_SERVICE" {
					t.Fatalf("%s: capability %s", c.Name, a)
				}
			}
		}
	})
}
