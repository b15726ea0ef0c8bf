package kube

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sshgate/sshgate/internal/gate"
	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// Names inside a pod.
const (
	mainContainer  = "main"
	agentContainer = "sshgate-agent"
	volumeName     = "sshgate"
	tmpVolume      = "tmp"
	// labelsAnnotation holds the gate's labels exactly (label values are
	// restricted; List gives these back).
	labelsAnnotation = "sshgate.io/labels"
	// defaultContainerAnnotation names the container kubectl picks.
	defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"
	// agentInImage is where the agent image keeps the binary.
	agentInImage = "/sshgate-agent"
)

// EngineConfig configures the Kubernetes engine. Zero values get the
// defaults named.
type EngineConfig struct {
	// Namespace is where targets without their own namespace run
	// ("default").
	Namespace string
	// Namespaces are listed for orphans beside Namespace and the
	// namespaces of the targets prepared since start.
	Namespaces []string
	// AgentImage is an image holding the static agent at /sshgate-agent
	// (dist/kubernetes/Dockerfile.agent). Required.
	AgentImage string
	// ImagePullPolicy is the pods' imagePullPolicy: Always, IfNotPresent
	// (default) or Never.
	ImagePullPolicy corev1.PullPolicy
	// ReadonlyRootfs makes the main container's root filesystem read-only
	// (with an emptyDir /tmp).
	ReadonlyRootfs bool
	// DefaultMemory applies when the spec's Memory is 0 (1 GiB; negative:
	// no limit). Requests are small (RequestMemory, 10m CPU) so that pods
	// pack on a node; limits bound them.
	DefaultMemory int64
	RequestMemory int64 // 32 MiB (or the limit when smaller)
	// StartTimeout bounds the wait for a pod to run (60s).
	StartTimeout time.Duration
	// FirstByteTimeout bounds the wait for an attached exec's first output
	// (the agent's SSH version line), so that a stream the API server
	// refuses (no pods/exec right, a pod gone) fails with a line rather
	// than later as an SSH error (15s).
	FirstByteTimeout time.Duration
	// NoMux gives every connection to a keeper pod (pool, per-user) an
	// exec of its own instead of a stream over the pod's long-lived one
	// (mux.go): kubernetes.mux: false.
	NoMux bool
	// WebSocket makes exec streams WebSocket first, SPDY when the upgrade
	// fails (kubernetes.exec_protocol: websocket); else SPDY first.
	WebSocket bool
	Logger    *slog.Logger
}

// Engine is the Kubernetes engine of the container lifecycle.
type Engine struct {
	cfg  EngineConfig
	rest *rest.Config
	cs   kubernetes.Interface
	log  *slog.Logger

	bg     context.Context // detached execs end with Close
	cancel context.CancelFunc

	mu  sync.Mutex
	nss map[string]bool // namespaces to list for orphans

	// The long-lived agent streams of keeper pods (mux.go), by pod ID.
	muxMu   sync.Mutex
	keepers map[string][]string // the agent command of each keeper pod created
	muxes   map[string]*podMux
	muxWG   sync.WaitGroup

	created sync.Map // pod ID -> when its create was sent (timeline.go)

	pendMu  sync.Mutex
	pending map[string]*pendingStart // per-connection pods Start left watching (early.go)
	early   sync.Map                 // pod IDs of per-connection pods
	probes  chan struct{}            // early exec attempts in flight (earlyProbes)
}

var _ lifecycle.Engine = (*Engine)(nil)

// NewEngine makes an Engine over the clientset cs; rc is its configuration,
// for exec streams (nil with a fake clientset: Exec then fails). It does no
// I/O.
func NewEngine(cfg EngineConfig, rc *rest.Config, cs kubernetes.Interface) (*Engine, error) {
	if cs == nil {
		return nil, errors.New("kubernetes: no client")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace(ServiceAccountNamespaceFile)
	}
	if err := checkNamespace(cfg.Namespace); err != nil {
		return nil, err
	}
	switch cfg.ImagePullPolicy {
	case "":
		cfg.ImagePullPolicy = corev1.PullIfNotPresent
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return nil, fmt.Errorf("kubernetes: image pull policy %q (Always, IfNotPresent or Never)", cfg.ImagePullPolicy)
	}
	if cfg.DefaultMemory == 0 {
		cfg.DefaultMemory = 1 << 30
	}
	if cfg.RequestMemory <= 0 {
		cfg.RequestMemory = 32 << 20
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.FirstByteTimeout <= 0 {
		cfg.FirstByteTimeout = 15 * time.Second
	}
	e := &Engine{cfg: cfg, rest: rc, cs: cs, log: cfg.Logger, nss: map[string]bool{cfg.Namespace: true},
		keepers: map[string][]string{}, muxes: map[string]*podMux{}, pending: map[string]*pendingStart{},
		probes: make(chan struct{}, earlyProbes)}
	for _, ns := range cfg.Namespaces {
		if checkNamespace(ns) == nil {
			e.nss[ns] = true
		}
	}
	e.bg, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Close ends the detached execs and the keeper pods' agent streams.
func (e *Engine) Close() {
	e.cancel()
	if err := e.waitMuxes(5 * time.Second); err != nil {
		e.log.Warn("close", "err", err)
	}
}

// Namespace is the default namespace of pods, resolved (never "").
func (e *Engine) Namespace() string { return e.cfg.Namespace }

// Ping checks that the API server answers and returns its version.
func (e *Engine) Ping(ctx context.Context) (string, error) {
	type result struct {
		v   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := e.cs.Discovery().ServerVersion()
		if err != nil {
			ch <- result{"", err}
			return
		}
		ch <- result{v.GitVersion, nil}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return "", fmt.Errorf("kubernetes API server: %w", r.err)
		}
		return r.v, nil
	case <-ctx.Done():
		return "", fmt.Errorf("kubernetes API server: %w", ctx.Err())
	}
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func checkNamespace(ns string) error {
	if !dnsLabel.MatchString(ns) {
		return fmt.Errorf("namespace %q is not a DNS label", ns)
	}
	return nil
}

// settings are a KubernetesSpec turned into pod settings.
type settings struct {
	spec      gate.KubernetesSpec
	namespace string
	image     string // --image, else the template's
	memory    int64  // bytes; 0: no limit
	milliCPU  int64  // 0: no limit
	template  *corev1.PodTemplateSpec
	userns    bool // the pod gets its own user namespace (hostUsers: false)
}

func settingsOf(s *lifecycle.Spec) *settings { return s.Engine.(*settings) }

// Prepare checks t's KubernetesSpec and translates it.
func (e *Engine) Prepare(t gate.Target) (*lifecycle.Spec, error) {
	if t.Kind != gate.KindKubernetes || t.Kubernetes == nil {
		return nil, gate.Errorf(fmt.Errorf("target %s is of kind %q", t.Name, t.Kind), "target %s is not a kubernetes target", t.Name)
	}
	s := *t.Kubernetes
	st := &settings{spec: s, namespace: s.Namespace, image: s.Image}
	if st.namespace == "" {
		st.namespace = e.cfg.Namespace
	}
	if err := checkNamespace(st.namespace); err != nil {
		return nil, lifecycle.Failed(t.Name, err, "the namespace is invalid")
	}
	if s.RootInside {
		if s.User != "" && !lifecycle.IsRootUser(s.User) {
			return nil, lifecycle.Failed(t.Name, fmt.Errorf("user %q with RootInside", s.User), "its settings are invalid (root inside, user %s)", lifecycle.Sanitize(s.User))
		}
		s.User, st.userns = "0:0", true
	}
	if s.PodTemplate != "" {
		tp, err := ParsePodTemplate([]byte(s.PodTemplate))
		if err == nil {
			err = CheckTemplate(tp, TemplateRules{Namespace: st.namespace, AllowHost: s.AllowHost, RootInside: s.RootInside, User: s.User})
		}
		if err != nil {
			return nil, lifecycle.Failed(t.Name, fmt.Errorf("pod template: %w", err), "its pod template is invalid (%s)", lifecycle.Sanitize(firstLine(err.Error())))
		}
		st.template = tp
		if s.User == "" {
			s.User = templateUser(tp)
		}
		if st.image == "" {
			st.image = TemplateImage(tp)
		}
		if tp.Spec.HostUsers != nil && !*tp.Spec.HostUsers {
			st.userns = true
		}
	}
	if strings.TrimSpace(st.image) == "" {
		return nil, lifecycle.Failed(t.Name, errors.New("no image"), "no image is set")
	}
	if s.User != "" && !lifecycle.IsRootUser(s.User) {
		if _, _, ok := lifecycle.NumericUser(s.User); !ok {
			return nil, lifecycle.Failed(t.Name, fmt.Errorf("user %q", s.User), "the user must be numeric (UID or UID:GID) on kubernetes")
		}
	}
	st.spec.User = s.User
	st.memory = s.Memory
	if st.memory == 0 {
		st.memory = max(e.cfg.DefaultMemory, 0)
	}
	if st.memory < 0 || s.NanoCPUs < 0 {
		return nil, lifecycle.Failed(t.Name, errors.New("negative limit"), "the limits are invalid")
	}
	st.milliCPU = s.NanoCPUs / 1e6
	if err := lifecycle.CheckEnv(t.Name, s.Env); err != nil {
		return nil, err
	}
	perUser, ttl, err := lifecycle.ParseMode(t.Name, s.Per, s.IdleTTL)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.nss[st.namespace] = true
	e.mu.Unlock()
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%q\x00%q\x00%q\x00%q\x00%d\x00%d\x00%v\x00%v\x00%q", t.Name, st.namespace, st.image, s.User, s.Cmd, s.Env,
		st.memory, st.milliCPU, s.RootInside, s.AllowHost, s.PodTemplate)
	return &lifecycle.Spec{Target: t.Name, Key: hex.EncodeToString(h.Sum(nil)[:12]), User: s.User, Cmd: s.Cmd, Env: s.Env,
		PerUser: perUser, IdleTTL: ttl, Pool: s.Pool, RootInside: s.RootInside, Engine: st}, nil
}

// User: a cluster does not say which user an image runs as without pulling
// its config, so the image default is unknown ("") and the lifecycle picks
// 65534 unless root is allowed. A pod of its own user namespace
// (hostUsers: false: --root-inside, or the template's) is remapped: the
// kubelet runs it so or not at all (Start then names why).
func (e *Engine) User(ctx context.Context, s *lifecycle.Spec) (lifecycle.UserInfo, error) {
	return lifecycle.UserInfo{Remapped: settingsOf(s).userns}, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// Create submits the pod (a pod has no created-but-not-started state): the
// installer container's postStart hook installs the agent and req.Files,
// then PID 1 of the main container is req.Entrypoint as req.User.
func (e *Engine) Create(ctx context.Context, req lifecycle.CreateRequest) (lifecycle.Ref, error) {
	st := settingsOf(req.Spec)
	name := PodName(req.Spec.Target, req.Suffix)
	ref := lifecycle.Ref{Name: name, Target: req.Spec.Target}
	pod, err := e.pod(st, name, req)
	if err != nil {
		return ref, lifecycle.Failed(ref.Target, err, "the gate could not prepare it")
	}
	// As with Docker: the create is not cancelled by the caller, so that a
	// pod the API server made is always known (and removed) by name.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	t0 := time.Now()
	_, err = e.cs.CoreV1().Pods(st.namespace).Create(cctx, pod, metav1.CreateOptions{})
	ccancel()
	if err == nil {
		ref.ID = st.namespace + "/" + name
		e.created.Store(ref.ID, t0)
		if early(req.Labels) {
			e.early.Store(ref.ID, true)
		}
		e.keep(ref, keeperBase(req))
		err = ctx.Err()
	}
	if err != nil {
		return ref, apiError(ref.Target, st.namespace, "create pod "+name, err)
	}
	return ref, nil
}

// pod builds the pod object of req.
func (e *Engine) pod(st *settings, name string, req lifecycle.CreateRequest) (*corev1.Pod, error) {
	uid, gid, known := int64(-1), int64(-1), false
	if req.User != "" {
		if lifecycle.IsRootUser(req.User) {
			uid, gid, known = 0, 0, true
		} else if u, g, ok := lifecycle.NumericUser(req.User); ok {
			uid, gid, known = int64(u), int64(g), true
		} else {
			return nil, fmt.Errorf("user %q is not numeric", req.User)
		}
	}
	psc := &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	if known {
		psc.RunAsUser, psc.RunAsGroup = &uid, &gid
		psc.RunAsNonRoot = ptr(uid != 0)
	}
	var hostUsers *bool
	if st.userns {
		hostUsers = ptr(false)
	}
	csc := func(readonly, caps bool) *corev1.SecurityContext {
		sc := &corev1.SecurityContext{
			Privileged:               ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			ReadOnlyRootFilesystem:   ptr(readonly),
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
		if caps {
			// Root inside its own user namespace: the runtime's default
			// capabilities, which act in that namespace only.
			sc.Capabilities = nil
		}
		return sc
	}
	// The files the installer writes (keys), as its environment.
	var initEnv []corev1.EnvVar
	for _, f := range req.Files {
		if f.Source != "" {
			continue // the agent binary: the installer's own
		}
		if path.Dir(f.Path) != lifecycle.DirMount {
			return nil, fmt.Errorf("file %s is not under %s", f.Path, lifecycle.DirMount)
		}
		mode := f.Mode.Perm()
		if !known || f.UID != int(uid) {
			mode |= 0o444 // written by the installer's user: readable by the main one
		}
		initEnv = append(initEnv, corev1.EnvVar{Name: "SSHGATE_FILE_" + path.Base(f.Path),
			Value: strconv.FormatUint(uint64(mode), 8) + ":" + base64.StdEncoding.EncodeToString(f.Data)})
	}
	var env []corev1.EnvVar
	for _, kv := range req.Env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "HOME" && v == "" {
			continue // the runtime sets HOME from the image's passwd
		}
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")},
		Limits:   corev1.ResourceList{},
	}
	reqMem := e.cfg.RequestMemory
	if st.memory > 0 {
		res.Limits[corev1.ResourceMemory] = *resource.NewQuantity(st.memory, resource.BinarySI)
		reqMem = min(reqMem, st.memory)
	}
	res.Requests[corev1.ResourceMemory] = *resource.NewQuantity(reqMem, resource.BinarySI)
	if st.milliCPU > 0 {
		res.Limits[corev1.ResourceCPU] = *resource.NewMilliQuantity(st.milliCPU, resource.DecimalSI)
		if st.milliCPU < 10 {
			res.Requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(st.milliCPU, resource.DecimalSI)
		}
	}
	mounts := []corev1.VolumeMount{
		{Name: volumeName, MountPath: lifecycle.DirMount, ReadOnly: true},
		{Name: volumeName, MountPath: lifecycle.AgentMount, SubPath: "sshgate-agent", ReadOnly: true},
	}
	vols := []corev1.Volume{{Name: volumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
		Medium: corev1.StorageMediumMemory, SizeLimit: resource.NewQuantity(64<<20, resource.BinarySI)}}}}
	if e.cfg.ReadonlyRootfs {
		vols = append(vols, corev1.Volume{Name: tmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			SizeLimit: resource.NewQuantity(64<<20, resource.BinarySI)}}})
		mounts = append(mounts, corev1.VolumeMount{Name: tmpVolume, MountPath: "/tmp"})
	}
	ann, err := json.Marshal(req.Labels)
	if err != nil {
		return nil, err
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: st.namespace, Labels: labelValues(req.Labels),
			// kubectl exec, logs and attach default to the main container,
			// not the installer that comes first.
			Annotations: map[string]string{labelsAnnotation: string(ann), defaultContainerAnnotation: mainContainer}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  ptr(false),
			EnableServiceLinks:            ptr(false),
			TerminationGracePeriodSeconds: ptr(int64(1)),
			Hostname:                      lifecycle.Hostname(req.Spec.Target),
			SecurityContext:               psc,
			HostUsers:                     hostUsers,
			Volumes:                       vols,
			Containers: []corev1.Container{{
				// The installer, first: its postStart hook copies the
				// agent and the keys, and the kubelet starts the next
				// container only once that hook has returned, in the same
				// pod sync (kube.go).
				Name: agentContainer, Image: e.cfg.AgentImage, ImagePullPolicy: e.cfg.ImagePullPolicy,
				Command: []string{agentInImage, "--hold"},
				Lifecycle: &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
					Command: []string{agentInImage, "--install", lifecycle.DirMount}}}},
				Env:             initEnv,
				VolumeMounts:    []corev1.VolumeMount{{Name: volumeName, MountPath: lifecycle.DirMount}},
				SecurityContext: csc(true, false),
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}, {
				Name: mainContainer, Image: st.image, ImagePullPolicy: e.cfg.ImagePullPolicy,
				Command:                  req.Entrypoint,
				Env:                      env,
				VolumeMounts:             mounts,
				SecurityContext:          csc(e.cfg.ReadonlyRootfs, st.spec.RootInside),
				Resources:                res,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
		},
	}
	if st.template != nil {
		p = applyTemplate(st.template, p, st.spec.AllowHost, st.spec.Memory != 0, st.spec.NanoCPUs != 0)
	}
	return p, nil
}

// Remove deletes the pod (a 1 s grace: the agent ends its sessions on
// SIGTERM); "not found" is success.
func (e *Engine) Remove(ctx context.Context, r lifecycle.Ref) error {
	ns, name, ok := splitID(r.ID)
	if !ok {
		return fmt.Errorf("pod id %q", r.ID)
	}
	e.dropMux(r)
	e.created.Delete(r.ID)
	e.early.Delete(r.ID)
	e.dropPending(r.ID)
	err := e.cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(1))})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// List returns the pods carrying all labels in every namespace the engine
// knows (its own, those configured, and those of the targets prepared).
func (e *Engine) List(ctx context.Context, want map[string]string) ([]lifecycle.Listed, error) {
	sel := labels.SelectorFromSet(labelValues(want)).String()
	e.mu.Lock()
	nss := make([]string, 0, len(e.nss))
	for ns := range e.nss {
		nss = append(nss, ns)
	}
	e.mu.Unlock()
	sort.Strings(nss)
	var out []lifecycle.Listed
	var errs []error
	for _, ns := range nss {
		list, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			errs = append(errs, fmt.Errorf("list pods in %s: %w", ns, err))
			continue
		}
		for _, p := range list.Items {
			l := map[string]string{}
			if err := json.Unmarshal([]byte(p.Annotations[labelsAnnotation]), &l); err != nil {
				continue // not the gate's
			}
			out = append(out, lifecycle.Listed{ID: ns + "/" + p.Name, Names: []string{p.Name}, Labels: l})
		}
	}
	return out, errors.Join(errs...)
}

// Inspect reports the main container's state. OOM kills of a process
// other than PID 1 are not reported by the API (OOMEvents stays 0).
func (e *Engine) Inspect(ctx context.Context, r lifecycle.Ref, since time.Time) (lifecycle.State, error) {
	p, err := e.get(ctx, r)
	if apierrors.IsNotFound(err) {
		return lifecycle.State{Gone: true}, nil
	}
	if err != nil {
		return lifecycle.State{}, fmt.Errorf("inspect pod %s: %w", r.Name, err)
	}
	s := lifecycle.State{Gone: p.DeletionTimestamp != nil}
	for _, c := range p.Spec.Containers {
		if c.Name == mainContainer {
			if m, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
				s.MemoryLimit = m.Value()
			}
		}
	}
	if cs := mainStatus(p); cs != nil {
		s.Running = cs.State.Running != nil
		if t := cs.State.Terminated; t != nil {
			s.ExitCode = int(t.ExitCode)
			s.Error = t.Reason
			s.OOM = t.Reason == "OOMKilled"
		}
	}
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		s.Running = false
	}
	return s, nil
}

// Wait blocks until the main container is not running.
func (e *Engine) Wait(ctx context.Context, r lifecycle.Ref) (int, error) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		p, err := e.get(ctx, r)
		if apierrors.IsNotFound(err) {
			return 137, nil
		}
		if err != nil && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err == nil {
			if cs := mainStatus(p); cs != nil && cs.State.Terminated != nil {
				return int(cs.State.Terminated.ExitCode), nil
			}
			if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
				return 1, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// Logs returns "": reading pods/log would need a right the shipped role
// does not grant. The waiting/terminated reasons name the cause instead.
func (e *Engine) Logs(ctx context.Context, r lifecycle.Ref) string { return "" }

func (e *Engine) get(ctx context.Context, r lifecycle.Ref) (*corev1.Pod, error) {
	ns, name, ok := splitID(r.ID)
	if !ok {
		return nil, fmt.Errorf("pod id %q", r.ID)
	}
	return e.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
}

func mainStatus(p *corev1.Pod) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == mainContainer {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func splitID(id string) (ns, name string, ok bool) {
	ns, name, ok = strings.Cut(id, "/")
	return ns, name, ok && ns != "" && name != ""
}

// labelValues makes label values of the gate's labels: a value Kubernetes
// refuses (a user name with '@', a long one) becomes "h-" and a hash of it,
// so that selectors still match; the annotation keeps the exact values.
func labelValues(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		if len(validation.IsValidLabelValue(v)) > 0 {
			sum := sha256.Sum256([]byte(v))
			v = "h-" + hex.EncodeToString(sum[:12])
		}
		out[k] = v
	}
	return out
}

// PodName is a DNS-1123 label from the target's name and a suffix.
func PodName(target, suffix string) string {
	h := lifecycle.Hostname(target)
	if h == "" {
		h = "target"
	}
	if len(h) > 40 {
		h = strings.TrimRight(h[:40], "-")
	}
	return "sshgate-" + h + "-" + strings.ToLower(suffix)
}

func ptr[T any](v T) *T { return &v }

// ServiceAccountNamespaceFile is where a pod's service account namespace is
// mounted: the namespace the gate runs in, when it runs in a cluster.
const ServiceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// DefaultNamespace is the namespace of targets when kubernetes.namespace is
// unset: the gate's own (the service account's, read from file) when it runs
// in a cluster, else "default".
func DefaultNamespace(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return "default"
	}
	ns := strings.TrimSpace(string(b))
	if checkNamespace(ns) != nil {
		return "default"
	}
	return ns
}
