package app

import (
	"context"
	"log/slog"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/target"
	"github.com/sshgate/sshgate/internal/target/kube"
)

// addKubernetes registers the kubernetes backend when a kubeconfig is set
// or the gate runs in a cluster. Without a cluster the gate still serves the
// other kinds: kubernetes targets then fail with a clear message.
func addKubernetes(ctx context.Context, cfg config.Config, st store.Store, gateID string, log *slog.Logger, backends map[string]target.Backend, started func(error)) func() {
	k := cfg.Kubernetes
	if k.Kubeconfig == "" && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return func() {}
	}
	nss := append([]string{}, k.Namespaces...)
	targets, terr := st.ListTargets(ctx)
	if terr == nil {
		for _, t := range targets {
			if t.Kind == gate.KindKubernetes && t.Kubernetes != nil && t.Kubernetes.Namespace != "" {
				nss = append(nss, t.Kubernetes.Namespace)
			}
		}
	}
	mem := int64(k.DefaultMemory)
	if mem == 0 {
		mem = -1
	}
	b, err := kube.New(kube.Config{
		Kubeconfig: k.Kubeconfig,
		AgentPath:  cfg.Docker.AgentPath,
		GateID:     gateID,
		Started:    started,
		Logger:     log,
		EngineConfig: kube.EngineConfig{
			Namespace:       k.Namespace,
			Namespaces:      nss,
			AgentImage:      k.AgentImage,
			ImagePullPolicy: corev1.PullPolicy(k.ImagePullPolicy),
			ReadonlyRootfs:  k.ReadonlyRootfs,
			DefaultMemory:   mem,
			StartTimeout:    k.StartTimeout.D(),
			NoMux:           !k.Mux,
			WebSocket:       k.ExecProtocol == "websocket",
		},
		AllowRoot:      k.AllowRoot,
		DefaultIdleTTL: k.IdleTTL.D(),
		PoolIdleTTL:    k.PoolIdleTTL.D(),
		AgentTimeout:   k.AgentTimeout.D(),
		OpenTimeout:    k.OpenTimeout.D(),
	}, nil)
	if err != nil {
		log.Warn("kubernetes targets disabled", "err", err)
		return func() {}
	}
	backends[gate.KindKubernetes] = b
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	version, err := b.Ping(pctx)
	if err != nil {
		log.Warn("kubernetes API server not reachable now; kubernetes targets will fail until it is", "err", err)
	} else {
		log.Info("kubernetes backend ready", "server", version, "namespace", b.Namespace(), "gate_id", b.GateID())
		rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
		if n, err := b.ReapOrphans(rctx); err != nil {
			log.Warn("removing orphaned pods", "removed", n, "err", err)
		} else if n > 0 {
			log.Info("removed orphaned pods", "removed", n)
		}
		rcancel()
		if terr == nil {
			for _, t := range targets {
				if t.Kind == gate.KindKubernetes && t.Kubernetes != nil && t.Kubernetes.Pool > 0 {
					if err := b.Prewarm(ctx, t); err != nil {
						log.Warn("prewarm pool", "target", t.Name, "err", err)
					}
				}
			}
		}
	}
	return func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer ccancel()
		if err := b.Close(cctx); err != nil {
			log.Warn("closing kubernetes backend", "err", err)
		}
	}
}
