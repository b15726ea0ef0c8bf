package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sshgate/sshgate/e2e/harness"
)

// The kube section: Kubernetes targets on the private cluster of
// scripts/k8s/up.sh against the same cluster used directly: a plain pod's
// create-to-Running (client-go: create, watch until its container runs)
// and `kubectl exec`. The gate (admin kubeconfig, a namespace of the
// bench's own, deleted at the end) has targets kbox (--per connection),
// kpool (--pool 4) and kmine (--per user); a second gate in the same
// namespace with kubernetes.mux: false (an exec per connection, as before
// the keeper pods' long-lived agent streams) has kpoolx and kminex, the
// same targets, for the before/after rows of the same run.

const (
	kubeCold     = "kbox"
	kubePool     = "kpool"
	kubeUser     = "kmine"
	kubePoolExec = "kpoolx" // on the gate with kubernetes.mux: false
	kubeUserExec = "kminex"
)

type kubeBench struct {
	state, kubectl string
	ns             string
	cs             kubernetes.Interface
	g, gx          *gate // mux on (the default), mux off
	key            string
}

// kubeReady finds the cluster (state directory and kubectl) or says why not.
func kubeReady(ctx context.Context) (state, kubectl, why string) {
	state = os.Getenv("K8S_STATE")
	if state == "" {
		state = "/var/lib/sshgate-k8s"
	}
	bin, err := os.ReadFile(filepath.Join(state, "bin"))
	if err != nil {
		return "", "", "no cluster state in " + state + " (start it with scripts/k8s/up.sh)"
	}
	kubectl = filepath.Join(strings.TrimSpace(string(bin)), "kubectl")
	if _, err := run(ctx, nil, kubectl, "--kubeconfig", filepath.Join(state, "admin.kubeconfig"), "get", "--raw", "/readyz"); err != nil {
		return "", "", "the cluster does not answer: " + err.Error()
	}
	return state, kubectl, ""
}

func (k *kubeBench) kctl(ctx context.Context, stdin []byte, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, k.kubectl, append([]string{"--kubeconfig", filepath.Join(k.state, "admin.kubeconfig"), "-n", k.ns}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	return cmd
}

// agentImage builds FROM scratch with the bench's agent and imports it into
// the cluster's containerd (tagged by the binary's hash).
func (k *kubeBench) agentImage(ctx context.Context, agent string) (string, error) {
	data, err := os.ReadFile(agent)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	tag := "sshgate-bench/agent:" + hex.EncodeToString(sum[:6])
	sock := filepath.Join(k.state, "containerd", "containerd.sock")
	if out, err := exec.CommandContext(ctx, "ctr", "-a", sock, "-n", "k8s.io", "images", "ls", "-q").Output(); err == nil &&
		bytes.Contains(out, []byte("docker.io/"+tag+"\n")) {
		return tag, nil
	}
	dir, err := os.MkdirTemp("", "sshgate-bench-agent")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY sshgate-agent /sshgate-agent\nUSER 65534:65534\nENTRYPOINT [\"/sshgate-agent\"]\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "sshgate-agent"), data, 0o755); err != nil {
		return "", err
	}
	build := exec.CommandContext(ctx, "docker", "build", "-q", "--network", "none", "-t", tag, dir)
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker build: %v: %s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "sh", "-c", "docker save "+tag+" | ctr -a "+sock+" -n k8s.io images import -").CombinedOutput(); err != nil {
		return "", fmt.Errorf("import %s: %v: %s", tag, err, out)
	}
	return tag, nil
}

// plainPod is a hardened one-container pod as the gate makes them, without
// the agent: the reference.
func (k *kubeBench) plainPod(name string, cmd ...string) *corev1.Pod {
	f, tr := false, true
	uid := int64(65534)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"sshgate-bench": "plain"}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: &f, EnableServiceLinks: &f,
			TerminationGracePeriodSeconds: ptrTo(int64(1)),
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &tr, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: "main", Image: harness.TestImage, ImagePullPolicy: corev1.PullNever, Command: cmd,
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &f, Privileged: &f,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
		},
	}
}

func ptrTo[T any](v T) *T { return &v }

// createToRunning creates a plain pod and returns the time until its
// container runs.
func (k *kubeBench) createToRunning(ctx context.Context, name string) (time.Duration, error) {
	pods := k.cs.CoreV1().Pods(k.ns)
	start := time.Now()
	p, err := pods.Create(ctx, k.plainPod(name, "sleep", "600"), metav1.CreateOptions{})
	if err != nil {
		return 0, err
	}
	w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: p.ResourceVersion})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if p, ok := ev.Object.(*corev1.Pod); ok {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Running != nil {
					return time.Since(start), nil
				}
			}
		}
	}
	return 0, errors.New("watch ended before pod " + name + " ran")
}

func (k *kubeBench) deletePod(ctx context.Context, name string) {
	k.cs.CoreV1().Pods(k.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(1))})
}

// settle waits until no per-connection pod of kbox is left and kpool's
// pool is full and running.
func (k *kubeBench) settle(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		list, err := k.cs.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{LabelSelector: "sshgate.gate"})
		if err != nil {
			return err
		}
		cold, pool, poolx := 0, 0, 0
		for _, p := range list.Items {
			running := p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning
			switch p.Labels["sshgate.target"] {
			case kubeCold:
				cold++
			case kubePool:
				if running {
					pool++
				}
			case kubePoolExec:
				if running {
					poolx++
				}
			}
		}
		if cold == 0 && pool >= warmPool && poolx >= warmPool {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("kube: the cluster did not settle within 2 minutes (pods of kbox left or kpool or kpoolx not full)")
}

func runKube(ctx context.Context, o *opts, bin, tmp, work, key, state, kubectl string, t *table, notes *[]string) error {
	k := &kubeBench{state: state, kubectl: kubectl, ns: "sshgate-bench-" + randomHex(4), key: key}
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(state, "admin.kubeconfig"))
	if err != nil {
		return err
	}
	if k.cs, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	if _, err := run(ctx, nil, kubectl, "--kubeconfig", filepath.Join(state, "admin.kubeconfig"), "create", "namespace", k.ns); err != nil {
		return err
	}
	reg.addHook(func() {
		exec.Command(kubectl, "--kubeconfig", filepath.Join(state, "admin.kubeconfig"), "delete", "namespace", k.ns, "--wait=false").Run()
	})
	img, err := k.agentImage(ctx, filepath.Join(tmp, "sshgate-agent"))
	if err != nil {
		return err
	}
	// startGate starts a gate (mux on or off) with the targets given.
	startGate := func(name string, mux bool, targets [][]string) (*gate, error) {
		dir := filepath.Join(tmp, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		cfg := filepath.Join(dir, "sshgate.yaml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf("log:\n  level: debug\nlimits:\n  max_unauthenticated_per_source: 64\nkubernetes:\n  kubeconfig: %s\n  namespace: %s\n  agent_image: %s\n  image_pull_policy: Never\n  start_timeout: 2m\n  mux: %v\n",
			filepath.Join(state, "admin.kubeconfig"), k.ns, img, mux)), 0o600); err != nil {
			return nil, err
		}
		g, err := newGate(ctx, name, bin, dir, key+".pub", "")
		if err != nil {
			return nil, fmt.Errorf("set up gate %s: %w", name, err)
		}
		for _, ta := range targets {
			if _, err := g.admin(ctx, append([]string{"target", "add", ta[0], "--env", "bench", "--kubernetes", "--image", harness.TestImage}, ta[1:]...)...); err != nil {
				return nil, fmt.Errorf("set up gate %s: %w", name, err)
			}
		}
		if _, err := g.admin(ctx, "grant", "alice", "--env", "bench"); err != nil {
			return nil, err
		}
		if err := g.serve(ctx, dir, cfg); err != nil {
			return nil, fmt.Errorf("gate %s: %w", name, err)
		}
		return g, nil
	}
	g, err := startGate("gate-kube", true, [][]string{{kubeCold}, {kubePool, "--pool", fmt.Sprint(warmPool)}, {kubeUser, "--per", "user"}})
	if err != nil {
		return err
	}
	k.g = g
	gx, err := startGate("gate-kube-nomux", false, [][]string{{kubePoolExec, "--pool", fmt.Sprint(warmPool)}, {kubeUserExec, "--per", "user"}})
	if err != nil {
		return err
	}
	k.gx = gx
	ep := func(target string) *endpoint {
		gg := g
		if target == kubePoolExec || target == kubeUserExec {
			gg = gx
		}
		e := gateEndpoint(gg, key)
		e.login = "alice+" + target
		return e
	}
	gateOf := func(target string) *gate { return ep(target).g }
	loadStart := loadavg()
	logf("kube: gates on %s (mux) and %s (mux off), namespace %s, agent image %s; waiting for the pools", g.addr, gx.addr, k.ns, img)
	if err := k.settle(ctx); err != nil {
		return fmt.Errorf("%w\ngate log:\n%s\ngate (mux off) log:\n%s", err, tail(g.log, 15), tail(gx.log, 15))
	}
	base := "bench-base"
	if _, err := k.createToRunning(ctx, base); err != nil {
		return fmt.Errorf("baseline pod: %w", err)
	}
	defer k.deletePod(context.WithoutCancel(ctx), base)
	kexec := func() *exec.Cmd { return k.kctl(ctx, nil, "exec", base, "--", "echo", "hi") }
	// Warm-ups: the per-user pods' first connections start them.
	userFirst, _, err := timeSSH(ctx, ep(kubeUser), "echo", "hi")
	if err != nil {
		return fmt.Errorf("%w\ngate log:\n%s", err, tail(g.log, 15))
	}
	if _, _, err := timeSSH(ctx, ep(kubeUserExec), "echo", "hi"); err != nil {
		return fmt.Errorf("%w\ngate (mux off) log:\n%s", err, tail(gx.log, 15))
	}
	timeCmd(kexec())

	runs := min(o.runs, 10)
	var create, cold, kx, pool, user, poolx, userx dsamples
	const ways = 7
	logf("kube: first byte, %d runs x %d ways", runs, ways)
	for i := 0; i < runs; i++ {
		for w := 0; w < ways; w++ {
			if err := k.settle(ctx); err != nil {
				return err
			}
			switch (i + w) % ways {
			case 0:
				name := fmt.Sprintf("bench-c%d", i)
				d, err := k.createToRunning(ctx, name)
				k.deletePod(ctx, name)
				if err != nil {
					return err
				}
				create.first = append(create.first, d)
			case 1, 3, 4, 5, 6:
				target := map[int]string{1: kubeCold, 3: kubePool, 4: kubeUser, 5: kubePoolExec, 6: kubeUserExec}[(i+w)%ways]
				s := map[string]*dsamples{kubeCold: &cold, kubePool: &pool, kubeUser: &user, kubePoolExec: &poolx, kubeUserExec: &userx}[target]
				gg := gateOf(target)
				cpu0 := harness.CPUSeconds(gg.PID())
				first, exit, err := timeSSH(ctx, ep(target), "echo", "hi")
				if err != nil {
					return fmt.Errorf("%w\ngate log:\n%s", err, tail(gg.log, 15))
				}
				s.cpu += harness.CPUSeconds(gg.PID()) - cpu0
				s.first, s.exit = append(s.first, first), append(s.exit, exit)
			case 2:
				first, exit, err := timeCmd(kexec())
				if err != nil {
					return err
				}
				kx.first, kx.exit = append(kx.first, first), append(kx.exit, exit)
			}
		}
	}
	perConn := func(s *dsamples) string { return fmt.Sprintf("%.1f ms/conn", s.cpu*1000/float64(len(s.first))) }
	t.section(fmt.Sprintf("kubernetes targets (%s, the cluster of scripts/k8s), %d runs each (ms, median / p90; direct: the same cluster by client-go and kubectl; gate CPU per connection)", harness.TestImage, runs))
	for _, r := range []struct {
		label         string
		direct, viaGW *dsamples
	}{
		{"first byte, cold (--per connection) vs pod create-to-Running", &create, &cold},
		{fmt.Sprintf("first byte, warm pool (--pool %d) vs kubectl exec", warmPool), &kx, &pool},
		{fmt.Sprintf("first byte, warm pool (--pool %d), mux off vs kubectl exec", warmPool), &kx, &poolx},
		{"first byte, per-user warm (--per user) vs kubectl exec", &kx, &user},
		{"first byte, per-user warm, mux off vs kubectl exec", &kx, &userx},
	} {
		t.row(r.label, medP90(r.direct.first), medP90(r.viaGW.first), ratio(percentile(r.viaGW.first, 0.5).Seconds(), percentile(r.direct.first, 0.5).Seconds()), perConn(r.viaGW))
	}
	for _, r := range []struct {
		label         string
		direct, viaGW *dsamples
	}{
		{"exit after output, warm pool vs kubectl exec", &kx, &pool},
		{"exit after output, per-user vs kubectl exec", &kx, &user},
		{"exit after output, per-user, mux off vs kubectl exec", &kx, &userx},
		{"exit after output, cold vs kubectl exec", &kx, &cold},
	} {
		da, ga := r.direct.afterOutput(), r.viaGW.afterOutput()
		t.row(r.label, medP90(da), medP90(ga), ratio(percentile(ga, 0.5).Seconds(), percentile(da, 0.5).Seconds()), "")
	}
	*notes = append(*notes,
		fmt.Sprintf("kube: per-user first connection (starts the pod): %s ms to first byte; the per-user rows are later connections", ms(userFirst)),
		"kube: `cold` is ssh to first byte against a plain pod's create-to-Running (one container, no volume, no agent installer, no exec); the aim is within 100 ms of it",
		"kube: `mux off` rows are a second gate with kubernetes.mux: false (an exec of the agent per connection) in the same run; the others reach the pool and per-user pods over each pod's one long-lived agent exec (a stream per connection); the aim for warm first byte is under 150 ms")

	// Throughput into a running pod.
	src := filepath.Join(work, "kube-src.bin")
	if _, err := makeSource(src, o.size); err != nil {
		return err
	}
	defer os.Remove(src)
	gib := float64(o.size) / (1 << 30)
	var mbD, mbG, cpuG, mbX, cpuX []float64
	logf("kube: throughput, %d runs x 3 paths", o.repeat)
	for rep := 0; rep < o.repeat; rep++ {
		for p := 0; p < 3; p++ {
			path := (rep + p) % 3 // 0 kubectl, 1 gate (mux), 2 gate (mux off)
			f, err := os.Open(src)
			if err != nil {
				return err
			}
			var cmd *exec.Cmd
			gg := g
			switch path {
			case 0:
				cmd = k.kctl(ctx, nil, "exec", "-i", base, "--", "wc", "-c")
			case 1:
				cmd = ep(kubeUser).ssh(ctx, nil, "wc", "-c")
			case 2:
				cmd, gg = ep(kubeUserExec).ssh(ctx, nil, "wc", "-c"), gx
			}
			cmd.Stdin = f
			var outb, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &outb, &errb
			cpu0 := harness.CPUSeconds(gg.PID())
			start := time.Now()
			err = cmd.Run()
			el := time.Since(start)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %v\n%s%s", strings.Join(cmd.Args, " "), err, outb.String(), errb.String())
			}
			// Every byte must have arrived: busybox's `cat > /dev/null`
			// under kubectl exec -i ends at once, kubectl exiting 0.
			if got := strings.TrimSpace(outb.String()); got != fmt.Sprint(o.size) {
				return fmt.Errorf("%s: wc -c counted %q, want %d\n%s", strings.Join(cmd.Args, " "), got, o.size, errb.String())
			}
			mbs := float64(o.size) / 1e6 / el.Seconds()
			cpu := (harness.CPUSeconds(gg.PID()) - cpu0) / gib
			switch path {
			case 0:
				mbD = append(mbD, mbs)
			case 1:
				mbG, cpuG = append(mbG, mbs), append(cpuG, cpu)
			case 2:
				mbX, cpuX = append(mbX, mbs), append(cpuX, cpu)
			}
			logf("  wc -c  path=%s %7.1f MB/s", []string{"kubectl", "gate", "gate, mux off"}[path], mbs)
		}
	}
	t.section(fmt.Sprintf("kubernetes targets, %s into a running pod (MB/s, best of %d, connection setup included; gate CPU: s per GiB, mean)", humanSize(o.size), o.repeat))
	t.row("wc -c: per-user via gate vs kubectl exec -i", fmt.Sprintf("%.0f", maxf(mbD)), fmt.Sprintf("%.0f", maxf(mbG)), ratio(maxf(mbG), maxf(mbD)), fmt.Sprintf("%.2f s/GiB", meanf(cpuG)))
	t.row("wc -c: per-user via gate, mux off vs kubectl exec -i", fmt.Sprintf("%.0f", maxf(mbD)), fmt.Sprintf("%.0f", maxf(mbX)), ratio(maxf(mbX), maxf(mbD)), fmt.Sprintf("%.2f s/GiB", meanf(cpuX)))

	// 20 sessions at once, cold, vs 20 plain pods created at once.
	const n = 20
	if err := k.settle(ctx); err != nil {
		return err
	}
	logf("kube: %d sessions at once", n)
	br := burst(ctx, n, func(i int) *exec.Cmd { return ep(kubeCold).ssh(ctx, nil, "echo", "ready") }, "")
	if err := k.settle(ctx); err != nil {
		return err
	}
	start := time.Now()
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, err := k.createToRunning(ctx, fmt.Sprintf("bench-b%d", i))
			errs <- err
		}()
	}
	var berr error
	for i := 0; i < n; i++ {
		berr = errors.Join(berr, <-errs)
	}
	all := time.Since(start)
	for i := 0; i < n; i++ {
		k.deletePod(ctx, fmt.Sprintf("bench-b%d", i))
	}
	t.section(fmt.Sprintf("kubernetes targets, %d at once (s until the last is ready)", n))
	direct := secs(all)
	if berr != nil {
		direct = "failed"
	}
	gateCell := secs(br.all)
	if br.failed > 0 {
		gateCell = fmt.Sprintf("%s (%d failed: %s)", secs(br.all), br.failed, br.firstErr)
	}
	t.row(fmt.Sprintf("%d x ssh kbox echo ready (cold) vs %d pods create-to-Running", n, n), direct, gateCell, ratio(br.all.Seconds(), all.Seconds()), "")
	if err := k.settle(ctx); err != nil {
		return err
	}
	g.Terminate(time.Minute)
	gx.Terminate(time.Minute)
	left, _ := k.cs.CoreV1().Pods(k.ns).List(context.WithoutCancel(ctx), metav1.ListOptions{LabelSelector: "sshgate.gate"})
	nleft := 0
	if left != nil {
		for _, p := range left.Items {
			if p.DeletionTimestamp == nil {
				nleft++
			}
		}
	}
	*notes = append(*notes, fmt.Sprintf("kube: namespace %s; gate pods not being deleted after the gates stopped (SIGTERM): %d", k.ns, nleft),
		fmt.Sprintf("kube: load average at the section's start / end: %s / %s", loadStart, loadavg()),
		"kube: "+muxLog(g.log), "kube: "+coldLog(g.log))
	return nil
}

// muxLog counts, in the gate's debug log, the agent execs by mode and the
// connections that went over a long-lived stream instead.
func muxLog(file string) string {
	data, _ := os.ReadFile(file)
	text := string(data)
	return fmt.Sprintf("gate log (mux on): %d long-lived agent execs, %d connections over them, %d agent execs per connection (stdio)",
		strings.Count(text, "mode=mux"), strings.Count(text, "agent stream opened, no exec"), strings.Count(text, "mode=stdio"))
}

// coldLog counts, in the gate's debug log, the per-connection pods whose
// agent exec got through before the pod's status said running (tried as
// soon as it had a node) and those whose status came first.
func coldLog(file string) string {
	data, _ := os.ReadFile(file)
	text := string(data)
	return fmt.Sprintf("gate log (mux on): cold agent execs through before the pod's status said running: %d, after: %d",
		strings.Count(text, "pod exec before running"), strings.Count(text, "pod exec after running"))
}
