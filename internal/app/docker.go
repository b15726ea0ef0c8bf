package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/docker/docker/client"

	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/target"
	"github.com/sshgate/sshgate/internal/target/docker"
)

// addDocker registers the docker backend. A gate without an engine or an
// agent binary still serves upstream targets: docker targets then fail with
// a clear message, and the reason is logged here once.
func addDocker(ctx context.Context, cfg config.Config, dir *datadir.Dir, st store.Store, gateID string, log *slog.Logger, backends map[string]target.Backend, started func(error)) (func(), error) {
	var api client.APIClient
	if cfg.Docker.Host != "" {
		c, err := client.NewClientWithOpts(client.FromEnv, client.WithHost(cfg.Docker.Host), client.WithAPIVersionNegotiation())
		if err != nil {
			log.Warn("docker targets disabled", "err", err)
			return func() {}, nil
		}
		api = c
	}
	b, err := docker.New(docker.Config{
		AgentPath:     cfg.Docker.AgentPath,
		ContainersDir: dir.ContainersDir(),
		DataDir:       dir.Path,
		Transport:     cfg.Docker.Transport,
		GateID:        gateID,
		Logger:        log,
		Started:       started,

		AllowRoot:      cfg.Docker.AllowRoot,
		ReadonlyRootfs: cfg.Docker.ReadonlyRootfs,
		DenyMounts:     cfg.Docker.DenyMounts,
		DefaultMemory:  dockerMemory(cfg.Docker.DefaultMemory),
		DefaultPids:    cfg.Docker.DefaultPids,
		DefaultIdleTTL: cfg.Docker.IdleTTL.D(),
		PoolIdleTTL:    cfg.Docker.PoolIdleTTL.D(),
		AgentTimeout:   cfg.Docker.AgentTimeout.D(),
		RemoveTimeout:  cfg.Docker.RemoveTimeout.D(),
		OpenTimeout:    cfg.Docker.OpenTimeout.D(),

		Registry:        containerRegistry{st},
		HeartbeatExpiry: cfg.Store.HeartbeatExpiry.D(),
	}, api)
	if err != nil {
		log.Warn("docker targets disabled", "err", err)
		return func() {}, nil
	}
	backends[gate.KindDocker] = b
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	engine, apiVersion, err := b.Ping(pctx)
	if err != nil {
		log.Warn("docker engine not reachable now; docker targets will fail until it is", "err", err)
	} else {
		log.Info("docker backend ready", "engine", engine, "api", apiVersion, "transport", b.Transport(), "gate_id", b.GateID())
		rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
		if n, err := b.ReapOrphans(rctx); err != nil {
			log.Warn("removing orphaned containers", "removed", n, "err", err)
		} else if n > 0 {
			log.Info("removed orphaned containers", "removed", n)
		}
		rcancel()
		if targets, err := st.ListTargets(ctx); err == nil {
			for _, t := range targets {
				if t.Kind == gate.KindDocker && t.Docker != nil && t.Docker.Pool > 0 {
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
			log.Warn("closing docker backend", "err", err)
		}
	}, nil
}

// dockerMemory maps docker.default_memory (0: no limit) onto the backend's
// DefaultMemory (negative: no limit).
func dockerMemory(s config.Size) int64 {
	if s == 0 {
		return -1
	}
	return int64(s)
}
