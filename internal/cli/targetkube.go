package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/client"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target/docker"
	"github.com/sshgate/sshgate/internal/target/kube"
)

// checkKubeTarget tries at `target add` what the gate does when the first
// pod starts: the pod, built as the gate builds it (template included), is
// submitted with a server-side dry run, and for --root-inside the nodes
// are asked whether they run pods in user namespaces. A refusal is the
// operator's error (exit 2). Without a cluster to ask (no
// kubernetes.kubeconfig, outside a cluster, unreachable, no right) it says
// so and the target is added: the gate checks again at connection time.
func (e *env) checkKubeTarget(ctx context.Context, t gate.Target, file string) error {
	k := t.Kubernetes
	if k.PodTemplate == "" && !k.RootInside {
		return nil
	}
	cfg, err := config.Load(e.configFile())
	if err != nil {
		return err
	}
	kc := cfg.Kubernetes
	if kc.Kubeconfig == "" && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		fmt.Fprintf(e.stdout, "not checked against a cluster (no kubernetes.kubeconfig): checked when the first pod starts\n")
		return nil
	}
	mem := int64(kc.DefaultMemory)
	if mem == 0 {
		mem = -1 // as the gate: 0 is no limit
	}
	eng, err := kube.NewEngineFor(kube.EngineConfig{Namespace: kc.Namespace, AgentImage: kc.AgentImage,
		ImagePullPolicy: corev1.PullPolicy(kc.ImagePullPolicy), ReadonlyRootfs: kc.ReadonlyRootfs, DefaultMemory: mem}, kc.Kubeconfig)
	if err != nil {
		fmt.Fprintf(e.stdout, "not checked against a cluster (%v): checked when the first pod starts\n", err)
		return nil
	}
	defer eng.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if k.RootInside {
		yes, no, err := eng.UsernsNodes(ctx)
		switch {
		case err != nil:
			fmt.Fprintf(e.stdout, "--root-inside: could not ask the nodes whether they run pods in user namespaces (%s): checked when the first pod starts\n", oneLine(err))
		case len(yes) == 0:
			return usagef("--root-inside: no node of the cluster runs pods in user namespaces (hostUsers: false; nodes without: %s), so root in the pod would be root on the node: "+
				"it needs Kubernetes 1.33+ (UserNamespacesSupport), containerd 2.0+ or CRI-O 1.25+ with runc 1.2+, and Linux 6.3+", strings.Join(no, ", "))
		default:
			fmt.Fprintf(e.stdout, "--root-inside: nodes running pods in user namespaces: %s\n", strings.Join(yes, ", "))
		}
	}
	err = eng.DryRun(ctx, t)
	what := "the pod"
	if file != "" {
		what = "--pod-template " + file
	}
	var se apierrors.APIStatus
	switch {
	case err == nil:
		fmt.Fprintf(e.stdout, "%s: accepted by the cluster (server-side dry run)\n", what)
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || (apierrors.IsForbidden(err) && !strings.Contains(err.Error(), "cannot create resource")):
		// Invalid fields, and admission (pod security, quota, policy).
		return usagef("%s: the cluster refuses the pod: %s", what, oneLine(err))
	case asStatus(err, &se):
		fmt.Fprintf(e.stdout, "%s: not checked by the cluster (%s): checked when the first pod starts\n", what, oneLine(err))
	default:
		fmt.Fprintf(e.stdout, "%s: not checked, the cluster did not answer (%s): checked when the first pod starts\n", what, oneLine(err))
	}
	return nil
}

func asStatus(err error, s *apierrors.APIStatus) bool {
	v, ok := err.(apierrors.APIStatus)
	if ok {
		*s = v
	}
	return ok
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// checkDockerRemap refuses --root-inside on a Docker engine that does not
// remap user namespaces; an engine that cannot be asked is named and the
// target added (the gate refuses at connection time).
func checkDockerRemap(ctx context.Context, out io.Writer) error {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		fmt.Fprintf(out, "--root-inside: could not ask the Docker engine whether it remaps user namespaces (%v): checked at connection time\n", err)
		return nil
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		fmt.Fprintf(out, "--root-inside: could not ask the Docker engine at %s whether it remaps user namespaces (%v): checked at connection time\n", c.DaemonHost(), err)
		return nil
	}
	for _, o := range info.SecurityOptions {
		if strings.Contains(o, "name=userns") || strings.Contains(o, "name=rootless") {
			fmt.Fprintf(out, "--root-inside: the Docker engine at %s remaps root to an unprivileged user (%s)\n", c.DaemonHost(), o)
			return nil
		}
	}
	return usagef("--root-inside: %s (%s; start it with --userns-remap)", docker.NotRemapped, c.DaemonHost())
}
