package kube

import (
	"context"
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sshgate/sshgate/internal/gate"
	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// DryRun submits the pod the target's first connection would get with a
// server-side dry run (nothing is created): the API server's validation
// and admission judge it. The error is the API server's (or Prepare's).
func (e *Engine) DryRun(ctx context.Context, t gate.Target) error {
	s, err := e.Prepare(t)
	if err != nil {
		return err
	}
	user := s.User
	if user == "" {
		user = "65534:65534"
	}
	st := settingsOf(s)
	req := lifecycle.CreateRequest{Spec: s, Suffix: "dryrun", User: user,
		Entrypoint: []string{lifecycle.AgentMount},
		Labels:     map[string]string{lifecycle.LabelGate: "dry-run", lifecycle.LabelTarget: t.Name}}
	pod, err := e.pod(st, PodName(t.Name, "dryrun"), req)
	if err != nil {
		return err
	}
	_, err = e.cs.CoreV1().Pods(st.namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// UsernsNodes reads which nodes run pods in user namespaces (hostUsers:
// false): those whose default runtime handler reports the feature
// (node.status.runtimeHandlers, from the kubelet and its CRI runtime).
// It needs the right to list nodes.
func (e *Engine) UsernsNodes(ctx context.Context) (yes, no []string, err error) {
	nodes, err := e.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes.Items {
		ok := false
		for _, h := range n.Status.RuntimeHandlers {
			if h.Name == "" && h.Features != nil && h.Features.UserNamespaces != nil && *h.Features.UserNamespaces {
				ok = true
			}
		}
		if ok {
			yes = append(yes, n.Name)
		} else {
			no = append(no, n.Name)
		}
	}
	sort.Strings(yes)
	sort.Strings(no)
	return yes, no, nil
}
