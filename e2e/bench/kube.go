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
	"slices"
	"strconv"
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
	kubeUserBase = "kmineb" // on the -baseline gate
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
	startGate := func(name, bin, img string, mux bool, targets [][]string) (*gate, error) {
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
	g, err := startGate("gate-kube", bin, img, true, [][]string{{kubeCold}, {kubePool, "--pool", fmt.Sprint(warmPool)}, {kubeUser, "--per", "user"}})
	if err != nil {
		return err
	}
	k.g = g
	gx, err := startGate("gate-kube-nomux", bin, img, false, [][]string{{kubePoolExec, "--pool", fmt.Sprint(warmPool)}, {kubeUserExec, "--per", "user"}})
	if err != nil {
		return err
	}
	k.gx = gx
	var gb *gate // -baseline: that binary's gate, mux on, its agent beside it if there is one
	if o.baseline != "" {
		bimg := img
		if a := filepath.Join(filepath.Dir(o.baseline), "sshgate-agent"); fileExists(a) {
			if bimg, err = k.agentImage(ctx, a); err != nil {
				return err
			}
		}
		if gb, err = startGate("gate-kube-base", o.baseline, bimg, true, [][]string{{kubeUserBase, "--per", "user"}}); err != nil {
			return err
		}
		*notes = append(*notes, fmt.Sprintf("kube: [baseline] rows: a gate of %s (agent image %s), mux on, in the same run", o.baseline, bimg))
	}
	ep := func(target string) *endpoint {
		gg := g
		switch target {
		case kubePoolExec, kubeUserExec:
			gg = gx
		case kubeUserBase:
			gg = gb
		}
		e := gateEndpoint(gg, key)
		e.login = "alice+" + target
		return e
	}
	loadStart := loadavg()
	logf("kube: gate pprof %s, mux off %s", g.pprof, gx.pprof)
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
	if gb != nil {
		if _, _, err := timeSSH(ctx, ep(kubeUserBase), "echo", "hi"); err != nil {
			return fmt.Errorf("%w\ngate (baseline) log:\n%s", err, tail(gb.log, 15))
		}
	}
	timeCmd(kexec())
	if !o.kubeThroughput {
		if err := k.firstByte(ctx, o, t, notes, g, ep, kexec, userFirst); err != nil {
			return err
		}
	}
	if err := k.throughput(ctx, o, t, notes, work, base, g, gx, gb, ep); err != nil {
		return err
	}
	if !o.kubeThroughput {
		if err := k.burst(ctx, t, ep); err != nil {
			return err
		}
	}
	if err := k.settle(ctx); err != nil {
		return err
	}
	g.Terminate(time.Minute)
	gx.Terminate(time.Minute)
	if gb != nil {
		gb.Terminate(time.Minute)
	}
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

// firstByte is the first-byte and exit rows.
func (k *kubeBench) firstByte(ctx context.Context, o *opts, t *table, notes *[]string, g *gate, ep func(string) *endpoint, kexec func() *exec.Cmd, userFirst time.Duration) error {
	gateOf := func(target string) *gate { return ep(target).g }
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

	return nil
}

// throughput is the rows of 256 MiB (-size) into a running pod, with the
// CPU per GiB of every process on each path.
func (k *kubeBench) throughput(ctx context.Context, o *opts, t *table, notes *[]string, work, base string, g, gx, gb *gate, ep func(string) *endpoint) error {
	src := filepath.Join(work, "kube-src.bin")
	if _, err := makeSource(src, o.size); err != nil {
		return err
	}
	defer os.Remove(src)
	gib := float64(o.size) / (1 << 30)
	type path struct {
		name   string
		g      *gate  // nil: kubectl
		target string // per-user target, or "" for kubectl into base
		mbs    []float64
		cpu    cpuTable
		rtt    []time.Duration // the rtt probe's, during the transfers
	}
	paths := []*path{{name: "kubectl exec -i"}, {name: "gate", g: g, target: kubeUser}, {name: "gate, mux off", g: gx, target: kubeUserExec}}
	if gb != nil {
		paths = append(paths, &path{name: "gate [baseline]", g: gb, target: kubeUserBase})
	}
	// Each path's pod: the container whose cgroup holds its agent and wc.
	cgroups := map[*path]string{}
	for _, p := range paths {
		pod := base
		if p.target != "" {
			list, err := k.cs.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{LabelSelector: "sshgate.target=" + p.target})
			if err != nil || len(list.Items) != 1 {
				return fmt.Errorf("the per-user pod of %s: %v (%d pods)", p.target, err, len(list.Items))
			}
			pod = list.Items[0].Name
		}
		cg, err := k.containerCgroup(ctx, pod)
		if err != nil {
			return err
		}
		cgroups[p] = cg
	}
	logf("kube: throughput, %d runs x %d paths", o.repeat, len(paths))
	loadStart := loadavg()
	for rep := 0; rep < o.repeat; rep++ {
		for i := range paths {
			p := paths[(rep+i)%len(paths)]
			f, err := os.Open(src)
			if err != nil {
				return err
			}
			var cmd *exec.Cmd
			gpid := 0
			if p.g == nil {
				cmd = k.kctl(ctx, nil, "exec", "-i", base, "--", "wc", "-c")
			} else {
				cmd, gpid = ep(p.target).ssh(ctx, nil, "wc", "-c"), p.g.PID()
			}
			cmd.Stdin = f
			var outb, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &outb, &errb
			var probe *rttProbe
			if p.target != "" && rep == o.repeat-1 {
				// The last round: a probe beside the transfer (not in its CPU).
				if probe, err = startRTTProbe(ctx, ep(p.target)); err != nil {
					return err
				}
			}
			m := startCPU(k.state, gpid, cgroups[p])
			start := time.Now()
			err = cmd.Run()
			el := time.Since(start)
			if probe != nil {
				p.rtt = probe.end()
			}
			f.Close()
			client := 0.0
			if cmd.ProcessState != nil {
				client = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
			}
			// The agent's last accounting (a --stdio agent exits just after).
			time.Sleep(100 * time.Millisecond)
			parts, busy := m.end(client)
			if err != nil {
				return fmt.Errorf("%s: %v\n%s%s", strings.Join(cmd.Args, " "), err, outb.String(), errb.String())
			}
			// Every byte must have arrived: busybox's `cat > /dev/null`
			// under kubectl exec -i ends at once, kubectl exiting 0.
			if got := strings.TrimSpace(outb.String()); got != fmt.Sprint(o.size) {
				return fmt.Errorf("%s: wc -c counted %q, want %d\n%s", strings.Join(cmd.Args, " "), got, o.size, errb.String())
			}
			mbs := float64(o.size) / 1e6 / el.Seconds()
			p.mbs = append(p.mbs, mbs)
			p.cpu.add(parts, busy, gib)
			logf("  wc -c  path=%s %7.1f MB/s, machine busy %.0f%%, cpu s: %v", p.name, mbs, 100*busy, fmtParts(parts))
		}
	}
	loadEnd := loadavg()
	d := paths[0]
	t.section(fmt.Sprintf("kubernetes targets, %s into a running pod (MB/s, best of %d, connection setup included; gate CPU: s per GiB, mean; load average %s / %s)", humanSize(o.size), o.repeat, loadStart, loadEnd))
	for _, p := range paths[1:] {
		label := "wc -c: per-user via gate vs kubectl exec -i"
		switch p.target {
		case kubeUserExec:
			label = "wc -c: per-user via gate, mux off vs kubectl exec -i"
		case kubeUserBase:
			label = "wc -c: per-user via gate [baseline] vs kubectl exec -i"
		}
		t.row(label, fmt.Sprintf("%.0f", maxf(d.mbs)), fmt.Sprintf("%.0f", maxf(p.mbs)), ratio(maxf(p.mbs), maxf(d.mbs)), fmt.Sprintf("%.2f s/GiB", p.cpu.sum["gate"]/float64(max(p.cpu.n, 1))))
	}
	for _, p := range paths[1:] {
		if len(p.rtt) > 0 {
			med := percentile(p.rtt, 0.5)
			*notes = append(*notes, fmt.Sprintf("kube: %s: echo round trip of a second connection to the same pod during the last transfer: median %s ms, p90 %s ms (%d probes); a 2 MiB SSH window per round trip would allow %.0f MB/s",
				p.name, ms(med), ms(percentile(p.rtt, 0.9)), len(p.rtt), 2*1.048576/med.Seconds()))
		}
	}
	t.section(fmt.Sprintf("kubernetes targets, %s into a running pod: CPU s per GiB by process (mean of %d; machine busy: share of all cores during the transfer)", humanSize(o.size), o.repeat))
	t.row(append([]string{"path"}, append(slices.Clone(cpuParts), "machine busy")...)...)
	for _, p := range paths {
		t.row(append([]string{p.name}, p.cpu.cells()...)...)
	}
	if o.profile != "" {
		if err := k.profileThroughput(ctx, o, notes, src, paths[1].g, cgroups[paths[1]], ep(kubeUser)); err != nil {
			logf("kube profile: %v", err)
		}
	}
	*notes = append(*notes, "kube: CPU by process: client is ssh or kubectl (rusage), gate/kube-apiserver/kubelet/containerd/shims from /proc (all of the cluster's containerd shims), agent the sshgate-agent processes in the pod's container (sampled every 50 ms), wc the rest of the container's cpuacct cgroup")
	return nil
}

// profileThroughput takes 10 s profiles of the gate (pprof) and of the
// pod's mux agent (perf record, when perf is there) while transfers into
// the per-user pod run back to back.
func (k *kubeBench) profileThroughput(ctx context.Context, o *opts, notes *[]string, src string, g *gate, cg string, e *endpoint) error {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		return err
	}
	agentPID := 0
	b, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(c), "--mux") {
			agentPID = pid
		}
	}
	var perf *exec.Cmd
	perfOut := filepath.Join(o.profile, "agent-kube.perf")
	if agentPID > 0 {
		if p, err := exec.LookPath("perf"); err == nil {
			perf = exec.CommandContext(ctx, p, "record", "-F", "499", "-g", "-o", perfOut, "-p", strconv.Itoa(agentPID), "--", "sleep", "10")
			if err := perf.Start(); err != nil {
				perf = nil
			}
		}
	}
	logf("  profiling the gate (and agent pid %d) for 10 s during transfers into the per-user pod", agentPID)
	done := cpuProfile(g.pprof)
	for {
		select {
		case r := <-done:
			if perf != nil {
				perf.Wait()
				*notes = append(*notes, "kube: agent profile: "+perfOut+" (perf report -i "+perfOut+")")
			}
			if r.err != nil {
				return r.err
			}
			out := filepath.Join(o.profile, "gate-cpu-kube-wc.pprof")
			*notes = append(*notes, "kube: gate CPU profile: "+out+" (go tool pprof -top "+out+")")
			return os.WriteFile(out, r.data, 0o644)
		default:
		}
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		cmd := e.ssh(ctx, nil, "wc", "-c")
		cmd.Stdin = f
		err = cmd.Run()
		f.Close()
		if err != nil {
			return err
		}
	}
}

func fmtParts(parts map[string]float64) string {
	var b strings.Builder
	for _, p := range cpuParts {
		fmt.Fprintf(&b, "%s=%.2f ", p, parts[p])
	}
	return strings.TrimSpace(b.String())
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// burst is the row of 20 cold sessions at once.
func (k *kubeBench) burst(ctx context.Context, t *table, ep func(string) *endpoint) error {
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
