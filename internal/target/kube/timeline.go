package kube

import (
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// timeline records when the gate saw a pod's start steps (its create sent,
// a node set, the agent installed, the main container running), for the
// debug log: where a cold connection's time goes.
type timeline struct {
	created                   time.Time
	scheduled, installed, run time.Duration // since created; 0: not seen
}

func (e *Engine) timeline(id string) *timeline {
	tl := &timeline{created: time.Now()}
	if v, ok := e.created.Load(id); ok {
		tl.created = v.(time.Time)
	}
	return tl
}

// saw notes the steps p's status shows that were not seen before.
func (tl *timeline) saw(p *corev1.Pod) {
	d := time.Since(tl.created)
	if tl.scheduled == 0 && p.Spec.NodeName != "" {
		tl.scheduled = d
	}
	if tl.installed == 0 {
		for _, cs := range p.Status.InitContainerStatuses {
			if cs.Name == agentContainer && cs.State.Terminated != nil {
				tl.installed = d
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == agentContainer && cs.State.Running != nil {
				tl.installed = d
			}
		}
	}
	if tl.run == 0 {
		if cs := mainStatus(p); cs != nil && cs.State.Running != nil {
			tl.run = d
		}
	}
}

func (tl *timeline) log(log *slog.Logger, pod string, err error) {
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	log.Debug("pod start timeline", "pod", pod, "scheduled_ms", ms(tl.scheduled), "installed_ms", ms(tl.installed),
		"running_ms", ms(tl.run), "took_ms", ms(time.Since(tl.created)), "ok", err == nil)
}

// since is the time since pod id's create was sent (0: unknown).
func (e *Engine) since(id string) time.Duration {
	if v, ok := e.created.Load(id); ok {
		return time.Since(v.(time.Time))
	}
	return 0
}
