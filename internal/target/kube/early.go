package kube

import (
	"context"
	"strings"
	"sync"
	"time"

	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// Exec before the status says Running, for a per-connection pod (the one
// a user waits for). The kubelet writes a pod's status from its runtime
// cache, which its relist (PLEG) refreshes once a second: the main
// container runs up to a second before the status says so. Its exec,
// though, asks the runtime itself. So Start returns once the pod has a
// node, leaving its watch running (a pendingStart), and the connection's
// attached exec of the agent is tried at once and again every
// earlyRetry while the kubelet answers that the container is not there
// yet; the first stream whose agent answers wins. The watch still
// decides failures: when it ends with a cause, that is the line, and the
// attempts stop; when it sees the container running, the exec is made
// once more as usual. Everything ends with the connection's context
// (Open's), and at most at StartTimeout.

// earlyRetry is the pause between exec attempts into a starting pod.
const earlyRetry = 50 * time.Millisecond

// earlyProbes bounds the exec attempts in flight at once across the
// engine: each costs TLS handshakes to the API server and from it to the
// kubelet (a few ms of CPU on each side), and 20 pods started at once each
// trying every 50 ms slowed them all (20 cold connections at once: 12.5 s
// against 7.6 s before the early exec). A pod waiting for a slot still has
// its watch, which then decides as before.
const earlyProbes = 2

// pendingStart is a per-connection pod's start whose watch goes on after
// Start returned.
type pendingStart struct {
	done   chan struct{} // closed when the watch ended: err is set
	err    error         // nil: the main container runs
	cancel context.CancelFunc
	node   chan struct{} // closed when the pod has a node
	once   sync.Once
}

func (ps *pendingStart) scheduled() { ps.once.Do(func() { close(ps.node) }) }

// wait waits for the watch's verdict.
func (ps *pendingStart) wait(ctx context.Context, r lifecycle.Ref) error {
	defer ps.cancel()
	select {
	case <-ps.done:
		return ps.err
	case <-ctx.Done():
		return lifecycle.ContextError(r.Target, "wait for pod "+r.Name, ctx.Err())
	}
}

// early: a pod of one connection, not of a pool (whose fills no one waits
// for) nor a keeper (whose long-lived stream opens at Running).
func early(labels map[string]string) bool {
	return labels[lifecycle.LabelPer] == "connection" && labels[lifecycle.LabelPool] != "1"
}

func (e *Engine) setPending(id string, ps *pendingStart) {
	e.pendMu.Lock()
	e.pending[id] = ps
	e.pendMu.Unlock()
}

// takePending returns and forgets id's pending start, if any.
func (e *Engine) takePending(id string) *pendingStart {
	e.pendMu.Lock()
	defer e.pendMu.Unlock()
	ps := e.pending[id]
	delete(e.pending, id)
	return ps
}

// dropPending ends id's pending watch (Remove).
func (e *Engine) dropPending(id string) {
	if ps := e.takePending(id); ps != nil {
		ps.cancel()
	}
}

// notYet: the kubelet's answer for an exec into a container it does not
// run yet (not created, or created and not started).
func notYet(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "container not found") || strings.Contains(msg, "not running") ||
		strings.Contains(msg, "does not have a host assigned")
}

// earlyExec makes x's attached exec in r while its pending start may still
// be watching.
func (e *Engine) earlyExec(ctx context.Context, r lifecycle.Ref, x lifecycle.ExecRequest, ps *pendingStart) (*lifecycle.Process, error) {
	defer ps.cancel()
	ns, name, _ := splitID(r.ID)
	t0 := time.Now()
	for n := 1; ; n++ {
		select {
		case <-ps.done:
			// The watch's verdict: a cause, or running (the usual exec).
			if ps.err != nil {
				return nil, ps.err
			}
			e.log.Debug("pod exec after running", "pod", r.Name, "attempts", n-1)
			return e.exec(ctx, r, x)
		default:
		}
		select {
		case e.probes <- struct{}{}:
		case <-ps.done:
			continue // the watch's verdict, at the top
		case <-ctx.Done():
			return nil, apiError(r.Target, ns, "exec in "+r.Name, ctx.Err())
		}
		ex, err := e.executor(ns, name, x.Cmd, true)
		if err != nil {
			<-e.probes
			return nil, lifecycle.Failed(r.Target, err, "the gate could not prepare it")
		}
		p, cause := e.stream(ctx, r, ex)
		<-e.probes
		if cause == nil {
			e.log.Debug("pod exec before running", "pod", r.Name, "attempts", n, "took", time.Since(t0).Round(time.Millisecond))
			return p, nil
		}
		if ctx.Err() != nil {
			return nil, apiError(r.Target, ns, "exec in "+r.Name, ctx.Err())
		}
		if !notYet(cause) {
			// Anything else (no exec protocol, forbidden, an agent that
			// does not answer): what the watch says, then the usual
			// exec, whose error is the one to give.
			e.log.Debug("early pod exec", "pod", r.Name, "attempts", n, "err", cause)
			if err := ps.wait(ctx, r); err != nil {
				return nil, err
			}
			return e.exec(ctx, r, x)
		}
		select {
		case <-ps.done:
		case <-ctx.Done():
			return nil, apiError(r.Target, ns, "exec in "+r.Name, ctx.Err())
		case <-time.After(earlyRetry):
		}
	}
}
