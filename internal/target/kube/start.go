package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/sshgate/sshgate/internal/gate"
	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// Start waits, at most StartTimeout, for the pod's main container to run.
// A pod that cannot start (image missing, unschedulable, a failing
// installer or main container) ends the wait at once with one line naming
// why. A per-connection pod's Start returns once the pod has a node, its
// watch going on for Exec (early.go).
func (e *Engine) Start(ctx context.Context, r lifecycle.Ref) error {
	ns, name, ok := splitID(r.ID)
	if !ok {
		return lifecycle.Failed(r.Target, fmt.Errorf("pod id %q", r.ID), "the gate could not prepare it")
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.StartTimeout)
	tl := e.timeline(r.ID)
	if _, ok := e.early.Load(r.ID); !ok || e.rest == nil {
		defer cancel()
		err := e.waitRunning(ctx, r, ns, name, tl, nil)
		tl.log(e.log, r.Name, err)
		if err == nil {
			e.prewarm(r)
		}
		return err
	}
	ps := &pendingStart{done: make(chan struct{}), node: make(chan struct{}), cancel: cancel}
	go func() {
		defer cancel()
		ps.err = e.waitRunning(ctx, r, ns, name, tl, ps.scheduled)
		if errors.Is(ctx.Err(), context.Canceled) {
			e.log.Debug("pod start timeline: the watch ended (the exec got through, or the connection ended)", "pod", r.Name, "scheduled_ms", tl.scheduled.Milliseconds())
		} else {
			tl.log(e.log, r.Name, ps.err)
		}
		close(ps.done)
	}()
	select {
	case <-ps.node:
		e.setPending(r.ID, ps)
		return nil
	case <-ps.done:
		return ps.err
	}
}

// waitRunning watches the pod until its main container runs or it cannot
// start; onNode, if not nil, is called when it has a node.
func (e *Engine) waitRunning(ctx context.Context, r lifecycle.Ref, ns, name string, tl *timeline, onNode func()) error {
	pods := e.cs.CoreV1().Pods(ns)
	why := "it was not scheduled yet"
	userns := false
	fail := func(err error) error {
		w := why
		if userns {
			w += "; it asks for its own user namespace (hostUsers: false), which the node's runtime may not support"
		}
		return e.startFailed(ctx, r, ns, w, err)
	}
	for {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fail(err)
		}
		tl.saw(p)
		up, pe, w := podStarted(r.Target, p)
		if up || pe != nil {
			return errOrNil(pe)
		}
		if p.Spec.NodeName != "" && onNode != nil {
			onNode()
		}
		why = w
		// The kubelet refuses a user-namespace pod its runtime cannot run
		// only in an event (which the gate's role may not read): the line
		// names the likely cause.
		userns = p.Spec.HostUsers != nil && !*p.Spec.HostUsers
		wt, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(),
			ResourceVersion: p.ResourceVersion})
		if err != nil {
			return fail(err)
		}
		for ev := range wt.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if ev.Type == watch.Deleted {
				wt.Stop()
				return lifecycle.Failed(r.Target, errors.New("pod deleted while it started"), "it was removed while it started")
			}
			if !ok {
				continue
			}
			tl.saw(p)
			up, pe, w := podStarted(r.Target, p)
			if up || pe != nil {
				wt.Stop()
				return errOrNil(pe)
			}
			if p.Spec.NodeName != "" && onNode != nil {
				onNode()
			}
			why = w
		}
		wt.Stop()
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		// The watch ended early (a server timeout, an error event): look
		// again, not at once.
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func errOrNil(pe *gate.PublicError) error {
	if pe == nil {
		return nil
	}
	return pe
}

// startFailed is the line for an error met while waiting: the time ran out
// (with what the pod was waiting for), or the API's own error.
func (e *Engine) startFailed(ctx context.Context, r lifecycle.Ref, ns, why string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded {
		return lifecycle.Failed(r.Target, fmt.Errorf("pod %s: %s: %w", r.Name, why, err), "it did not start within %s (%s)", e.cfg.StartTimeout, why)
	}
	if apierrors.IsNotFound(err) {
		return lifecycle.Failed(r.Target, err, "it was removed while it started")
	}
	return apiError(r.Target, ns, "wait for pod "+r.Name, err)
}

// imageReasons are the waiting reasons of a container whose image is not on
// the node and will not be (or could not be) pulled.
var imageReasons = map[string]bool{
	"ErrImageNeverPull": true, "ErrImagePull": true, "ImagePullBackOff": true,
	"InvalidImageName": true, "ImageInspectError": true, "RegistryUnavailable": true,
}

// podStarted reads a pod's status: up when the main container runs; a
// public error when it cannot start; else why it is still waiting.
func podStarted(t string, p *corev1.Pod) (up bool, pe *gate.PublicError, why string) {
	if p.DeletionTimestamp != nil {
		return false, lifecycle.Failed(t, errors.New("pod is being deleted"), "it was removed while it started"), ""
	}
	image := func(name string) string {
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			if c.Name == name {
				return c.Image
			}
		}
		return ""
	}
	// init: an init container (of the template), whose exit 0 is its
	// success; the gate's installer is a regular container that must not
	// exit while the pod starts.
	check := func(cs corev1.ContainerStatus, init bool) *gate.PublicError {
		cause := func() error {
			return fmt.Errorf("pod %s container %s: %s", p.Name, cs.Name, stateText(cs.State))
		}
		agent := cs.Name == agentContainer
		if w := cs.State.Waiting; w != nil {
			switch {
			case imageReasons[w.Reason] && agent:
				return lifecycle.Failed(t, cause(), "the agent image %q is not available on the cluster", lifecycle.Sanitize(image(cs.Name)))
			case imageReasons[w.Reason]:
				return lifecycle.Failed(t, cause(), "image %q not available on the cluster", lifecycle.Sanitize(image(cs.Name)))
			case w.Reason == "CrashLoopBackOff":
				return lifecycle.Failed(t, cause(), "it keeps crashing (crash loop)")
			case w.Reason == "CreateContainerConfigError" || w.Reason == "CreateContainerError" || w.Reason == "RunContainerError":
				return lifecycle.Failed(t, cause(), "the cluster could not run it (%s)", w.Reason)
			}
		}
		if x := cs.State.Terminated; x != nil && (!init || x.ExitCode != 0) {
			switch {
			case agent:
				// Its postStart hook (the copy) failed, or it was killed.
				return lifecycle.Failed(t, cause(), "its agent could not be installed (%s)", exitText(x))
			case init:
				return lifecycle.Failed(t, cause(), "its init container %s failed (exit code %d)", lifecycle.Sanitize(cs.Name), x.ExitCode)
			case x.Reason == "OOMKilled":
				return lifecycle.Failed(t, cause(), "it ran out of memory at start")
			}
			return lifecycle.Failed(t, cause(), "it exited at start (exit code %d)", x.ExitCode)
		}
		return nil
	}
	for _, cs := range p.Status.InitContainerStatuses {
		if pe := check(cs, true); pe != nil {
			return false, pe, ""
		}
	}
	// The installer first: when its hook fails, the main container starts
	// without an agent and fails too, for that reason.
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == agentContainer {
			if pe := check(cs, false); pe != nil {
				return false, pe, ""
			}
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if pe := check(cs, false); pe != nil {
			return false, pe, ""
		}
		if cs.Name == mainContainer && cs.State.Running != nil {
			return true, nil, ""
		}
	}
	if p.Status.Phase == corev1.PodFailed {
		return false, lifecycle.Failed(t, fmt.Errorf("pod %s failed: %s %s", p.Name, p.Status.Reason, p.Status.Message), "it failed at start (%s)", orWord(p.Status.Reason, "failed")), ""
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			if strings.Contains(c.Message, "Insufficient") || strings.Contains(c.Message, "Too many pods") {
				return false, lifecycle.Failed(t, fmt.Errorf("pod %s: %s", p.Name, c.Message), "the cluster has no room for it (unschedulable)"), ""
			}
			return false, nil, "unschedulable"
		}
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return false, nil, w.Reason
		}
	}
	if p.Spec.NodeName == "" {
		return false, nil, "it was not scheduled yet"
	}
	return false, nil, "it was starting"
}

// exitText names how a container ended: its exit code, and the reason
// when it is not plain (a failed postStart hook, OOMKilled).
func exitText(x *corev1.ContainerStateTerminated) string {
	if x.Reason != "" && x.Reason != "Error" && x.Reason != "Completed" {
		return fmt.Sprintf("%s, exit code %d", lifecycle.Sanitize(x.Reason), x.ExitCode)
	}
	return fmt.Sprintf("exit code %d", x.ExitCode)
}

func stateText(s corev1.ContainerState) string {
	switch {
	case s.Waiting != nil:
		return "waiting: " + s.Waiting.Reason + ": " + s.Waiting.Message
	case s.Terminated != nil:
		return fmt.Sprintf("terminated: %s (exit code %d): %s", s.Terminated.Reason, s.Terminated.ExitCode, s.Terminated.Message)
	case s.Running != nil:
		return "running"
	}
	return "unknown"
}

func orWord(s, w string) string {
	if s == "" {
		return w
	}
	return s
}

// apiError classifies an API error met while doing op for target t in
// namespace ns.
func apiError(t, ns, op string, err error) error {
	var pe *gate.PublicError
	if errors.As(err, &pe) {
		return err
	}
	cause := fmt.Errorf("%s: %w", op, err)
	if pe := lifecycle.ContextError(t, op, err); pe != nil {
		return pe
	}
	switch {
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota"):
		return lifecycle.Failed(t, cause, "the quota of namespace %q is exceeded", ns)
	case apierrors.IsForbidden(err):
		return lifecycle.Failed(t, cause, "the gate may not manage pods in namespace %q", ns)
	case apierrors.IsUnauthorized(err):
		return lifecycle.Failed(t, cause, "the cluster refused the gate's credentials")
	case apierrors.IsNotFound(err) && strings.Contains(err.Error(), "namespace"):
		return lifecycle.Failed(t, cause, "namespace %q does not exist", ns)
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		return lifecycle.Failed(t, cause, "the cluster refused the pod settings")
	case apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err):
		return lifecycle.Failed(t, cause, "the cluster reported a conflict")
	case apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err):
		return lifecycle.Failed(t, cause, "the cluster is busy")
	}
	if _, ok := err.(apierrors.APIStatus); !ok {
		return lifecycle.Failed(t, cause, "the cluster is unreachable")
	}
	return lifecycle.Failed(t, cause, "the cluster failed")
}
