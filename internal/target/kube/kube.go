// Package kube is the Kubernetes engine of the container lifecycle
// (target/container): a target's pod built from its spec, submitted, waited
// for with a bounded time and one line naming why it did not start, deleted,
// listed by labels for reaping, and the agent reached over the API server's
// exec (client-go remotecommand: SPDY, WebSocket as the fallback; exec.go): one exec
// stream per SSH connection to a per-connection pod, as the Docker exec
// transport does, and a stream over the pod's one long-lived agent exec for
// a pool or per-user pod (mux.go). New puts the engine and the lifecycle
// together as the kubernetes target backend.
//
// Agent injection: an installer container. The pod gets a memory-backed
// emptyDir at /run/sshgate; its first container runs the agent image (the
// static sshgate-agent alone, FROM scratch: kubernetes.agent_image) as
// `sshgate-agent --hold` (it does nothing until SIGTERM), with a postStart
// exec hook `sshgate-agent --install /run/sshgate` that copies the agent
// and the pod's keys (given as its environment) into the emptyDir; the
// main container, second, mounts it read-only (the binary at
// /run/sshgate-agent through a subPath) and runs the agent as PID 1. The
// kubelet runs a postStart hook synchronously and starts the next
// container only when it has returned, in the same pod sync, so the agent
// is in place before the main container is created. An init container,
// as before, made the kubelet wait for its next relist (PLEG, once a
// second) to see the installer exit before it started the main container,
// and for another relist before the status said Running: measured here, a
// cold connection's pod was seen installed about 0.9 s after its create
// and running exactly 1.0 s later, against 0.7 s create-to-Running for a
// plain one-container pod; cold first byte 2.08 s. The installer container
// is hardened as the main one (all capabilities dropped, no privilege
// escalation, seccomp RuntimeDefault, read-only root, the pod's user), asks
// for 1m CPU and 16 MiB (64 MiB, 0.5 CPU at most, which the copy into the
// memory-backed emptyDir is charged to) and stays asleep for the pod's
// life; its death after the start takes nothing (the emptyDir is the
// pod's), and before it (a failing hook: the kubelet kills it, and the
// main container starting without an agent fails as well) it is the line
// (Start). A template's init containers run before it.
//
// Exec before Running (early.go): the main container runs up to a relist
// before the status says so, and the kubelet serves an exec from the
// runtime, not from that status; so a per-connection pod's agent exec is
// tried as soon as the pod has a node, again every 50 ms while the kubelet
// answers that the container is not there, while the watch still decides
// failures. What is left of a cold connection, measured: the kubelet's
// volume manager polls every 300 ms for the pod's volumes to be mounted
// before it creates the sandbox (a pod without volumes, like the plain
// reference pod, skips that wait), the installer's own start and hook
// (about 0.2 s), then the exec and the SSH handshake (about 0.15 s); the
// plain pod pays the relist that the early exec does not wait for. At
// most 2 attempts are in flight per engine (each costs TLS handshakes on
// the API server and the kubelet; unbounded, 20 cold connections at once
// took 12.5 s instead of 7.6). Measured, one bench sequence (load average
// 2-8): cold first byte 702 ms median against 706 ms create-to-Running of
// a plain pod (main, before this: 2,076 against 730); some 35 ms more gate
// CPU per cold connection for the attempts; 20 cold connections at once
// 6.7 s (main 6.1 s, plain pods 5.0 s).
//
// Chosen over a copy over exec because the copy needs a shell or tar in
// the user's image and a second round trip through the API server before
// the first byte (the 9 MB agent over an exec stream, which carries about
// 36 MiB/s here: about 0.25 s on top of the exec's own setup), while the
// installer needs neither and runs on the node inside the pod's own
// start. The agent's host key so travels in the pod spec (readable by
// whoever may get pods in the namespace): it only authenticates the agent
// at the end of an exec stream the API server already authenticates, and
// dies with the pod; the gate's login key never leaves the gate.
//
// Must not import: sshd/... relay broker store/... auth/... policy app target/upstream target/docker
package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sshgate/sshgate/internal/target"
	"github.com/sshgate/sshgate/internal/target/container"
)

// Config configures the kubernetes target backend: the lifecycle's
// settings and the engine's. Zero values get the defaults named.
type Config struct {
	// Kubeconfig is the kubeconfig file; "" uses the in-cluster service
	// account (New fails outside a cluster).
	Kubeconfig string
	// AgentPath is the sshgate-agent binary the lifecycle checks (it is not
	// copied: the pod gets the agent from AgentImage). Default: beside the
	// gate binary, else $PATH.
	AgentPath string
	// GateID is the value of the sshgate.gate label identifying this gate
	// instance; ReapOrphans removes every pod carrying it. Required.
	GateID  string
	Started func(err error)
	Logger  *slog.Logger

	EngineConfig

	AllowRoot        bool
	DefaultIdleTTL   time.Duration // 15m
	PoolIdleTTL      time.Duration // 30m
	AgentTimeout     time.Duration // 15s
	RemoveTimeout    time.Duration // 15s
	HandshakeTimeout time.Duration // 15s
	ReapInterval     time.Duration // 1s
	OpenTimeout      time.Duration // 60s
}

// Backend is the kubernetes target backend: the container lifecycle over a
// cluster.
type Backend struct {
	*container.Backend
	engine *Engine
}

var _ target.Backend = (*Backend)(nil)

// RESTConfig loads the client configuration: the kubeconfig file, or the
// in-cluster service account when path is "".
func RESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes: no kubeconfig given and not in a cluster: %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: path}, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return c, nil
}

// New makes a Backend. rc may be nil: it is then loaded by RESTConfig from
// cfg.Kubeconfig. New does no I/O on the cluster.
func New(cfg Config, rc *rest.Config) (*Backend, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("backend", "kubernetes")
	if rc == nil {
		var err error
		if rc, err = RESTConfig(cfg.Kubeconfig); err != nil {
			return nil, err
		}
	}
	if cfg.GateID == "" {
		sum := sha256.Sum256([]byte(rc.Host + "|" + cfg.Kubeconfig))
		cfg.GateID = hex.EncodeToString(sum[:6])
	}
	if cfg.AgentImage == "" {
		return nil, errors.New("kubernetes: no agent image (kubernetes.agent_image)")
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	ec := cfg.EngineConfig
	ec.Logger = log
	if ec.FirstByteTimeout <= 0 {
		ec.FirstByteTimeout = cfg.AgentTimeout
	}
	eng, err := NewEngine(ec, rc, cs)
	if err != nil {
		return nil, err
	}
	lc, err := container.New(container.Config{
		AgentPath:        cfg.AgentPath,
		GateID:           cfg.GateID,
		Transport:        container.TransportExec,
		AllowRoot:        cfg.AllowRoot,
		Started:          cfg.Started,
		Logger:           log,
		DefaultIdleTTL:   cfg.DefaultIdleTTL,
		PoolIdleTTL:      cfg.PoolIdleTTL,
		AgentTimeout:     cfg.AgentTimeout,
		RemoveTimeout:    cfg.RemoveTimeout,
		HandshakeTimeout: cfg.HandshakeTimeout,
		ReapInterval:     cfg.ReapInterval,
		OpenTimeout:      cfg.OpenTimeout,
	}, eng)
	if err != nil {
		eng.Close()
		return nil, err
	}
	return &Backend{Backend: lc, engine: eng}, nil
}

// Ping checks that the API server answers and returns its version.
func (b *Backend) Ping(ctx context.Context) (string, error) { return b.engine.Ping(ctx) }

// Namespace is where pods of targets without their own namespace go:
// kubernetes.namespace, else (unset) the gate's own service-account
// namespace in a cluster, else "default".
func (b *Backend) Namespace() string { return b.engine.Namespace() }

// Close removes every pod of the backend and stops its background work.
func (b *Backend) Close(ctx context.Context) error {
	err := b.Backend.Close(ctx)
	b.engine.Close()
	return err
}

// NewEngineFor makes an Engine from a kubeconfig file ("" : the in-cluster
// service account), for checks outside the gate (`target add`).
func NewEngineFor(cfg EngineConfig, kubeconfig string) (*Engine, error) {
	rc, err := RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.Timeout = 15 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if cfg.AgentImage == "" {
		cfg.AgentImage = "sshgate/agent:latest"
	}
	return NewEngine(cfg, rc, cs)
}
