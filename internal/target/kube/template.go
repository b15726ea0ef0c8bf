package kube

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// Pod templates (`target add --kubernetes --pod-template FILE`).
//
// A template is one YAML (or JSON) document: a Pod (apiVersion v1), a
// PodTemplate (its template), or a bare PodTemplateSpec (metadata and spec,
// as under a Deployment's template). Fields are decoded strictly: an unknown
// or duplicated field is an error naming it. The gate builds its own pod
// (below) and lays it over the template:
//
//   - kept from the template: labels and annotations (beside the gate's),
//     scheduling (nodeSelector, affinity, tolerations, topology spread,
//     priorityClassName, schedulerName, runtimeClassName, nodeName),
//     imagePullSecrets, DNS settings, hostAliases, serviceAccountName,
//     volumes, the pod securityContext's fsGroup, supplementalGroups,
//     sysctls and SELinux options, activeDeadlineSeconds, extra containers
//     and init containers (hardened as the gate's own), and of the main
//     container (the one named "main", or the only one): image (when
//     --image is not given), imagePullPolicy, env and envFrom (--setenv
//     wins on a name), ports, workingDir, volumeMounts, probes, lifecycle
//     hooks, and resources (--memory and --cpus win for their resource);
//   - the gate's, always: the pod's name, namespace (--namespace), hostname,
//     restartPolicy Never, the agent's init container and emptyDir, the
//     main container's command (the agent as PID 1; use --cmd), the user
//     (--user, else the template's runAsUser), the gate's labels
//     (sshgate.*) and annotation (sshgate.io/*);
//   - security, stricter of the two: every container drops all
//     capabilities, may not escalate privileges, runs under seccomp
//     RuntimeDefault unless the template names a Localhost profile, and
//     has a read-only root filesystem where either asks for one;
//     runAsNonRoot true in the template stays; the service account token
//     is not mounted unless the template sets
//     automountServiceAccountToken: true together with a
//     serviceAccountName other than "default";
//   - refused, unless --allow-host-access: privileged containers, added
//     capabilities other than NET_BIND_SERVICE, allowPrivilegeEscalation
//     true, seccomp or AppArmor Unconfined, procMount Unmasked, hostPath
//     volumes, hostNetwork, hostPID, hostIPC, and a non-gate container
//     running as uid 0 (except in the pod's own user namespace);
//   - refused always: ephemeralContainers, a restartPolicy other than
//     Never, a command or args on the main container, a hostname or
//     subdomain, a namespace other than --namespace, names the gate uses
//     (the volumes sshgate and tmp, the container sshgate-agent, mounts
//     at /run/sshgate...), and a second document.
//
// What the API server alone can judge (a bad quantity in a field it
// checks, an unknown priority class) is found by a server-side dry run at
// `target add`, or else when the first pod is created.

// MaxTemplateSize bounds a pod template file.
const MaxTemplateSize = 256 << 10

// ParsePodTemplate reads a pod template (YAML or JSON). The error names
// the problem (and the field, where one is at fault).
func ParsePodTemplate(data []byte) (*corev1.PodTemplateSpec, error) {
	if len(data) > MaxTemplateSize {
		return nil, fmt.Errorf("it is larger than %d KiB", MaxTemplateSize>>10)
	}
	var docs [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not YAML: %v", err)
		}
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("not YAML: %s", strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "))
		}
		if t := bytes.TrimSpace(j); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
			docs = append(docs, t)
		}
	}
	switch {
	case len(docs) == 0:
		return nil, errors.New("it is empty")
	case len(docs) > 1:
		return nil, fmt.Errorf("it holds %d YAML documents, want one", len(docs))
	}
	j := docs[0]
	if j[0] != '{' {
		return nil, errors.New("it is not a YAML mapping (want a Pod, a PodTemplate or a pod template's metadata and spec)")
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, fmt.Errorf("apiVersion or kind: %v", decodeText(err))
	}
	var out corev1.PodTemplateSpec
	switch tm.Kind {
	case "Pod", "PodTemplate":
		if tm.APIVersion != "v1" {
			return nil, fmt.Errorf("apiVersion %q: a %s is v1", tm.APIVersion, tm.Kind)
		}
		if tm.Kind == "Pod" {
			var p corev1.Pod
			if err := strict(j, &p); err != nil {
				return nil, err
			}
			out.ObjectMeta, out.Spec = p.ObjectMeta, p.Spec
		} else {
			var p corev1.PodTemplate
			if err := strict(j, &p); err != nil {
				return nil, err
			}
			out = p.Template
		}
	case "":
		if tm.APIVersion != "" {
			return nil, fmt.Errorf("apiVersion %q without a kind (want kind Pod or PodTemplate)", tm.APIVersion)
		}
		if err := strict(j, &out); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("kind %q: want Pod, PodTemplate or a pod template's metadata and spec", tm.Kind)
	}
	return &out, nil
}

// strict decodes j into v: unknown and duplicate fields are errors,
// field names match exactly (as the API server reads them).
func strict(j []byte, v any) error {
	serrs, err := kjson.UnmarshalStrict(j, v)
	if err != nil {
		return errors.New(decodeText(err))
	}
	if len(serrs) > 0 {
		msgs := make([]string, 0, len(serrs))
		for _, e := range serrs {
			msgs = append(msgs, decodeText(e))
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

func decodeText(err error) string {
	return strings.TrimPrefix(strings.TrimPrefix(err.Error(), "json: "), "error unmarshaling JSON: ")
}

// TemplateJSON is the form a template is stored in: the JSON of its
// PodTemplateSpec.
func TemplateJSON(t *corev1.PodTemplateSpec) (string, error) {
	b, err := json.Marshal(t)
	return string(b), err
}

// TemplateRules are a target's settings the template is checked against.
type TemplateRules struct {
	Namespace  string // the target's namespace ("" : any)
	AllowHost  bool   // --allow-host-access
	RootInside bool   // --root-inside
	User       string // --user
}

// mainIndex is the index of the template's main container: the one named
// "main", else the only one; -1 when there is none.
func mainIndex(s *corev1.PodSpec) (int, error) {
	for i, c := range s.Containers {
		if c.Name == mainContainer {
			return i, nil
		}
	}
	switch len(s.Containers) {
	case 0:
		return -1, nil
	case 1:
		return 0, nil
	}
	return -1, fmt.Errorf("spec.containers: %d containers and none named %q (the one the gate runs its agent in)", len(s.Containers), mainContainer)
}

// templateUser is the user the template's main container runs as
// ("UID[:GID]", "" when it does not say).
func templateUser(t *corev1.PodTemplateSpec) string {
	var uid, gid *int64
	if psc := t.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if i, _ := mainIndex(&t.Spec); i >= 0 {
		if sc := t.Spec.Containers[i].SecurityContext; sc != nil {
			if sc.RunAsUser != nil {
				uid = sc.RunAsUser
			}
			if sc.RunAsGroup != nil {
				gid = sc.RunAsGroup
			}
		}
	}
	if uid == nil {
		return ""
	}
	if gid == nil {
		return fmt.Sprint(*uid)
	}
	return fmt.Sprintf("%d:%d", *uid, *gid)
}

// TemplateImage is the main container's image in the template, or "".
func TemplateImage(t *corev1.PodTemplateSpec) string {
	if i, _ := mainIndex(&t.Spec); i >= 0 {
		return t.Spec.Containers[i].Image
	}
	return ""
}

// CheckTemplate lists every rule t breaks (see the package's template
// rules), each naming its field; nil when t is acceptable.
func CheckTemplate(t *corev1.PodTemplateSpec, r TemplateRules) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	host := func(field, what string) {
		if !r.AllowHost {
			bad(field, "%s is not allowed (only with --allow-host-access)", what)
		}
	}
	m := t.ObjectMeta
	if m.Namespace != "" && r.Namespace != "" && m.Namespace != r.Namespace {
		bad("metadata.namespace", "%q differs from the target's namespace %q (set it with --namespace)", m.Namespace, r.Namespace)
	}
	for k := range m.Labels {
		if gateKey(k) {
			bad("metadata.labels", "%q is the gate's own label", k)
		}
	}
	for k := range m.Annotations {
		if gateKey(k) {
			bad("metadata.annotations", "%q is the gate's own annotation", k)
		}
	}
	s := &t.Spec
	if s.RestartPolicy != "" && s.RestartPolicy != corev1.RestartPolicyNever {
		bad("spec.restartPolicy", "%q: the gate's pods are never restarted (Never)", s.RestartPolicy)
	}
	if s.Hostname != "" || s.Subdomain != "" {
		bad("spec.hostname", "the gate names the pod's host after the target")
	}
	if len(s.EphemeralContainers) > 0 {
		bad("spec.ephemeralContainers", "not allowed")
	}
	if s.AutomountServiceAccountToken != nil && *s.AutomountServiceAccountToken &&
		(s.ServiceAccountName == "" || s.ServiceAccountName == "default") {
		bad("spec.automountServiceAccountToken", "true needs a serviceAccountName other than \"default\" (users could act as it)")
	}
	if s.HostNetwork {
		host("spec.hostNetwork", "the node's network")
	}
	if s.HostPID {
		host("spec.hostPID", "the node's process namespace")
	}
	if s.HostIPC {
		host("spec.hostIPC", "the node's IPC namespace")
	}
	userns := r.RootInside || (s.HostUsers != nil && !*s.HostUsers)
	if psc := s.SecurityContext; psc != nil {
		checkSeccomp("spec.securityContext.seccompProfile", psc.SeccompProfile, host)
		if p := psc.AppArmorProfile; p != nil && p.Type == corev1.AppArmorProfileTypeUnconfined {
			host("spec.securityContext.appArmorProfile", "Unconfined")
		}
		if psc.RunAsNonRoot != nil && *psc.RunAsNonRoot && (r.RootInside || lifecycle.IsRootUser(r.User)) {
			bad("spec.securityContext.runAsNonRoot", "true, but the target runs as root")
		}
	}
	for i, v := range s.Volumes {
		f := fmt.Sprintf("spec.volumes[%d]", i)
		if v.Name == volumeName || v.Name == tmpVolume {
			bad(f+".name", "%q is the gate's own volume", v.Name)
		}
		if v.HostPath != nil {
			host(f+".hostPath", "a hostPath volume")
		}
	}
	mi, err := mainIndex(s)
	if err != nil {
		errs = append(errs, err)
	}
	check := func(f string, c *corev1.Container, isMain bool) {
		if c.Name == agentContainer {
			bad(f+".name", "%q is the gate's own container", c.Name)
		}
		if isMain {
			if len(c.Command) > 0 || len(c.Args) > 0 {
				bad(f+".command", "the gate runs its agent as the main container's command (use --cmd for a process beside it)")
			}
		}
		for j, vm := range c.VolumeMounts {
			if vm.Name == volumeName || vm.Name == tmpVolume {
				bad(fmt.Sprintf("%s.volumeMounts[%d].name", f, j), "%q is the gate's own volume", vm.Name)
			}
			if p := strings.TrimRight(vm.MountPath, "/"); p == lifecycle.DirMount || strings.HasPrefix(p, lifecycle.DirMount+"/") || p == lifecycle.AgentMount {
				bad(fmt.Sprintf("%s.volumeMounts[%d].mountPath", f, j), "%q is where the gate puts its agent", vm.MountPath)
			}
		}
		sc := c.SecurityContext
		if sc == nil {
			return
		}
		f += ".securityContext"
		if sc.Privileged != nil && *sc.Privileged {
			host(f+".privileged", "a privileged container")
		}
		if sc.AllowPrivilegeEscalation != nil && *sc.AllowPrivilegeEscalation {
			host(f+".allowPrivilegeEscalation", "true")
		}
		if sc.Capabilities != nil {
			for _, cp := range sc.Capabilities.Add {
				if strings.TrimPrefix(strings.ToUpper(string(cp)), "CAP_") != "NET_BIND_SERVICE" {
					host(f+".capabilities.add", fmt.Sprintf("capability %q", cp))
				}
			}
		}
		checkSeccomp(f+".seccompProfile", sc.SeccompProfile, host)
		if p := sc.AppArmorProfile; p != nil && p.Type == corev1.AppArmorProfileTypeUnconfined {
			host(f+".appArmorProfile", "Unconfined")
		}
		if sc.ProcMount != nil && *sc.ProcMount == corev1.UnmaskedProcMount {
			host(f+".procMount", "Unmasked")
		}
		if isMain {
			if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && (r.RootInside || lifecycle.IsRootUser(r.User)) {
				bad(f+".runAsNonRoot", "true, but the target runs as root")
			}
		} else if sc.RunAsUser != nil && *sc.RunAsUser == 0 && !userns {
			host(f+".runAsUser", "uid 0 outside a user namespace")
		}
	}
	for i := range s.InitContainers {
		check(fmt.Sprintf("spec.initContainers[%d]", i), &s.InitContainers[i], false)
	}
	for i := range s.Containers {
		check(fmt.Sprintf("spec.containers[%d]", i), &s.Containers[i], i == mi)
	}
	if u := templateUser(t); u != "" && r.User != "" && !sameUser(u, r.User) {
		bad("securityContext.runAsUser", "the template runs as %s, --user says %s", u, r.User)
	}
	if r.RootInside {
		if u := templateUser(t); u != "" && !lifecycle.IsRootUser(u) {
			bad("securityContext.runAsUser", "the template runs as %s, but --root-inside runs the pod as root", u)
		}
		if s.HostUsers != nil && *s.HostUsers {
			bad("spec.hostUsers", "true, but --root-inside needs the pod's own user namespace")
		}
	}
	return errors.Join(errs...)
}

func checkSeccomp(field string, p *corev1.SeccompProfile, host func(field, what string)) {
	if p != nil && p.Type == corev1.SeccompProfileTypeUnconfined {
		host(field, "Unconfined")
	}
}

// gateKey: the label and annotation keys the gate owns.
func gateKey(k string) bool {
	return strings.HasPrefix(k, "sshgate.") || strings.HasPrefix(k, "sshgate/")
}

// applyTemplate lays the gate's pod p over the template t (checked with
// CheckTemplate): what the gate sets wins, security is the stricter of
// the two. memSet and cpuSet say whether --memory and --cpus were given.
func applyTemplate(t *corev1.PodTemplateSpec, p *corev1.Pod, allowHost, memSet, cpuSet bool) *corev1.Pod {
	t = t.DeepCopy()
	out := p.DeepCopy()
	for k, v := range t.Labels {
		if _, ok := out.Labels[k]; !ok && !gateKey(k) {
			out.Labels[k] = v
		}
	}
	for k, v := range t.Annotations {
		if _, ok := out.Annotations[k]; !ok && !gateKey(k) {
			out.Annotations[k] = v
		}
	}
	gs := &p.Spec
	s := t.Spec // the template's, then the gate's over it
	s.RestartPolicy = gs.RestartPolicy
	s.Hostname, s.Subdomain = gs.Hostname, ""
	s.TerminationGracePeriodSeconds = gs.TerminationGracePeriodSeconds
	s.EphemeralContainers = nil
	if !(s.AutomountServiceAccountToken != nil && *s.AutomountServiceAccountToken &&
		s.ServiceAccountName != "" && s.ServiceAccountName != "default") {
		s.AutomountServiceAccountToken = ptr(false)
	}
	if s.EnableServiceLinks == nil {
		s.EnableServiceLinks = gs.EnableServiceLinks
	}
	if gs.HostUsers != nil {
		s.HostUsers = gs.HostUsers
	}
	if !allowHost {
		s.HostNetwork, s.HostPID, s.HostIPC = false, false, false
	}
	s.SecurityContext = podSecurity(t.Spec.SecurityContext, gs.SecurityContext, allowHost)
	s.Volumes = append(append([]corev1.Volume{}, gs.Volumes...), t.Spec.Volumes...)
	mi, _ := mainIndex(&t.Spec)
	// The gate's containers: its installer first, then its main one.
	gi, _ := mainIndex(gs)
	main := gs.Containers[gi]
	base := main.SecurityContext
	s.InitContainers = append([]corev1.Container{}, gs.InitContainers...)
	for _, c := range t.Spec.InitContainers {
		c.SecurityContext = containerSecurity(c.SecurityContext, base, allowHost, false)
		s.InitContainers = append(s.InitContainers, c)
	}
	var others []corev1.Container
	for i, c := range t.Spec.Containers {
		if i == mi {
			main = mergeMain(c, main, allowHost, memSet, cpuSet)
			continue
		}
		c.SecurityContext = containerSecurity(c.SecurityContext, base, allowHost, false)
		others = append(others, c)
	}
	s.Containers = append(append(append([]corev1.Container{}, gs.Containers[:gi]...), main), others...)
	out.Spec = s
	return out
}

// mergeMain is the gate's main container g with what the template's tc
// may set.
func mergeMain(tc, g corev1.Container, allowHost, memSet, cpuSet bool) corev1.Container {
	m := g
	if tc.ImagePullPolicy != "" {
		m.ImagePullPolicy = tc.ImagePullPolicy
	}
	own := map[string]bool{}
	for _, e := range g.Env {
		own[e.Name] = true
	}
	m.Env = nil
	for _, e := range tc.Env {
		if !own[e.Name] {
			m.Env = append(m.Env, e)
		}
	}
	m.Env = append(m.Env, g.Env...)
	m.EnvFrom = tc.EnvFrom
	m.VolumeMounts = append(append([]corev1.VolumeMount{}, g.VolumeMounts...), tc.VolumeMounts...)
	m.VolumeDevices = tc.VolumeDevices
	m.Ports, m.WorkingDir, m.Lifecycle = tc.Ports, tc.WorkingDir, tc.Lifecycle
	m.LivenessProbe, m.ReadinessProbe, m.StartupProbe = tc.LivenessProbe, tc.ReadinessProbe, tc.StartupProbe
	m.ResizePolicy = tc.ResizePolicy
	m.Resources = mergeResources(tc.Resources, g.Resources, memSet, cpuSet)
	m.SecurityContext = containerSecurity(tc.SecurityContext, g.SecurityContext, allowHost, true)
	return m
}

// mergeResources: the gate's limits win where its flag was given or the
// template sets none; requests are the template's where it sets them, and
// never above the limit.
func mergeResources(t, g corev1.ResourceRequirements, memSet, cpuSet bool) corev1.ResourceRequirements {
	out := corev1.ResourceRequirements{Limits: corev1.ResourceList{}, Requests: corev1.ResourceList{}, Claims: t.Claims}
	for k, v := range t.Limits {
		out.Limits[k] = v
	}
	for k, v := range t.Requests {
		out.Requests[k] = v
	}
	for _, r := range []struct {
		name corev1.ResourceName
		set  bool
	}{{corev1.ResourceMemory, memSet}, {corev1.ResourceCPU, cpuSet}} {
		gl, gok := g.Limits[r.name]
		_, tok := t.Limits[r.name]
		switch {
		case r.set && gok, !tok && gok:
			out.Limits[r.name] = gl
		case r.set && !gok:
			delete(out.Limits, r.name)
		}
		if _, ok := out.Requests[r.name]; !ok {
			if gr, ok := g.Requests[r.name]; ok {
				out.Requests[r.name] = gr
			}
		}
		if l, ok := out.Limits[r.name]; ok {
			if q, ok := out.Requests[r.name]; ok && q.Cmp(l) > 0 {
				out.Requests[r.name] = l.DeepCopy()
			}
		}
	}
	if len(out.Limits) == 0 {
		out.Limits = nil
	}
	return out
}

// sameUser: two numeric users with the same UID, and the same GID where
// both name one.
func sameUser(a, b string) bool {
	au, ag, ok1 := lifecycle.NumericUser(a)
	bu, bg, ok2 := lifecycle.NumericUser(b)
	if !ok1 || !ok2 || au != bu {
		return false
	}
	return !strings.Contains(a, ":") || !strings.Contains(b, ":") || ag == bg
}

// podSecurity is the gate's pod securityContext g with what the template's
// t may add: fsGroup, supplemental groups, sysctls, SELinux, a stricter
// seccomp profile or runAsNonRoot.
func podSecurity(t, g *corev1.PodSecurityContext, allowHost bool) *corev1.PodSecurityContext {
	out := g.DeepCopy()
	if t == nil {
		return out
	}
	out.FSGroup, out.FSGroupChangePolicy = t.FSGroup, t.FSGroupChangePolicy
	out.SupplementalGroups, out.SupplementalGroupsPolicy = t.SupplementalGroups, t.SupplementalGroupsPolicy
	out.Sysctls, out.SELinuxOptions, out.SELinuxChangePolicy = t.Sysctls, t.SELinuxOptions, t.SELinuxChangePolicy
	out.AppArmorProfile = t.AppArmorProfile
	if out.RunAsUser == nil {
		out.RunAsUser, out.RunAsGroup = t.RunAsUser, t.RunAsGroup
	}
	if t.RunAsNonRoot != nil && *t.RunAsNonRoot {
		out.RunAsNonRoot = ptr(true)
	}
	out.SeccompProfile = seccomp(t.SeccompProfile, g.SeccompProfile, allowHost)
	if !allowHost && out.AppArmorProfile != nil && out.AppArmorProfile.Type == corev1.AppArmorProfileTypeUnconfined {
		out.AppArmorProfile = nil
	}
	return out
}

func seccomp(t, g *corev1.SeccompProfile, allowHost bool) *corev1.SeccompProfile {
	if t == nil {
		return g
	}
	switch t.Type {
	case corev1.SeccompProfileTypeLocalhost:
		return t
	case corev1.SeccompProfileTypeUnconfined:
		if allowHost {
			return t
		}
	}
	return g
}

// containerSecurity is the gate's container securityContext g with the
// template's t: stricter settings kept, looser ones only with allowHost.
// The main container's user is the pod's (the gate's).
func containerSecurity(t, g *corev1.SecurityContext, allowHost, isMain bool) *corev1.SecurityContext {
	out := g.DeepCopy()
	if t == nil {
		return out
	}
	if t.ReadOnlyRootFilesystem != nil && *t.ReadOnlyRootFilesystem {
		out.ReadOnlyRootFilesystem = ptr(true)
	}
	out.SeccompProfile = seccomp(t.SeccompProfile, g.SeccompProfile, allowHost)
	out.SELinuxOptions, out.WindowsOptions = t.SELinuxOptions, t.WindowsOptions
	if p := t.AppArmorProfile; p != nil && (p.Type != corev1.AppArmorProfileTypeUnconfined || allowHost) {
		out.AppArmorProfile = p
	}
	if t.ProcMount != nil && (*t.ProcMount != corev1.UnmaskedProcMount || allowHost) {
		out.ProcMount = t.ProcMount
	}
	if t.Capabilities != nil {
		if out.Capabilities == nil {
			out.Capabilities = &corev1.Capabilities{}
		}
		if len(out.Capabilities.Drop) == 0 {
			out.Capabilities.Drop = t.Capabilities.Drop
		}
		for _, c := range t.Capabilities.Add {
			if allowHost || strings.TrimPrefix(strings.ToUpper(string(c)), "CAP_") == "NET_BIND_SERVICE" {
				out.Capabilities.Add = append(out.Capabilities.Add, c)
			}
		}
	}
	if allowHost {
		if t.Privileged != nil && *t.Privileged {
			out.Privileged, out.AllowPrivilegeEscalation = ptr(true), ptr(true)
		}
		if t.AllowPrivilegeEscalation != nil && *t.AllowPrivilegeEscalation {
			out.AllowPrivilegeEscalation = ptr(true)
		}
	}
	if !isMain {
		out.RunAsUser, out.RunAsGroup, out.RunAsNonRoot = t.RunAsUser, t.RunAsGroup, t.RunAsNonRoot
	} else if t.RunAsNonRoot != nil && *t.RunAsNonRoot {
		out.RunAsNonRoot = ptr(true)
	}
	return out
}
