// Package docker is the Docker engine of the container lifecycle
// (target/container): the Engine SDK calls, the hardening translated to a
// HostConfig, the agent copied in through the archive API, the exec streams,
// and Docker's error classification. New puts the engine and the lifecycle
// together as the docker target backend.
//
// Must not import: sshd/... relay broker store/... auth/... policy app target/upstream
package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/client"

	"github.com/sshgate/sshgate/internal/target"
	"github.com/sshgate/sshgate/internal/target/container"
)

// Labels put on every container the gate creates (see target/container).
const (
	LabelGate   = container.LabelGate
	LabelUser   = container.LabelUser
	LabelConn   = container.LabelConn
	LabelTarget = container.LabelTarget
	LabelPool   = container.LabelPool
	LabelPer    = container.LabelPer
	LabelDir    = container.LabelDir
)

// Transports.
const (
	TransportAuto   = ""
	TransportSocket = container.TransportSocket // unix socket in a bind-mounted directory (local engine)
	TransportExec   = container.TransportExec   // agent --stdio over a docker exec stream (any engine)
)

// Config configures the docker target backend: the lifecycle's settings
// and the engine's. Zero values get the defaults named.
type Config struct {
	// AgentPath is the static sshgate-agent binary put into containers.
	// Default: sshgate-agent beside os.Executable(), else from $PATH.
	AgentPath string
	// ContainersDir holds the per-container directories (datadir's
	// ContainersDir()). Required for the socket transport.
	ContainersDir string
	// Started, if set, is told of every container start and its outcome
	// (nil, or why the container did not come up): for metrics.
	Started func(err error)
	// GateID is the value of the sshgate.gate label identifying this gate
	// instance; ReapOrphans removes every container carrying it. Default: a
	// hash of ContainersDir and the engine's address.
	GateID string
	// DataDir is refused (with everything below or above it) as a mount
	// source. Default: the parent of ContainersDir.
	DataDir string
	// DenyMounts are added to DefaultDenyMounts.
	DenyMounts []string
	Logger     *slog.Logger

	// Transport: "" picks socket for a unix:// engine and exec otherwise.
	Transport string
	// ReadonlyRootfs makes the container root filesystem read-only (with a
	// tmpfs /tmp). Not available with the exec transport.
	ReadonlyRootfs bool
	// AllowRoot lets a container run as uid 0 (see container.Config).
	AllowRoot bool
	// DefaultMemory applies when DockerSpec.Memory is 0 (default 1 GiB;
	// negative: no limit). DefaultPids likewise (default 256).
	DefaultMemory int64
	DefaultPids   int64

	DefaultIdleTTL   time.Duration // per-user containers whose IdleTTL is empty (15m)
	PoolIdleTTL      time.Duration // drains the pool of a target not opened for this long (30m)
	AgentTimeout     time.Duration // bounds the wait for the agent to connect (15s)
	RemoveTimeout    time.Duration // bounds a container removal (15s)
	HandshakeTimeout time.Duration // put in the returned ssh.ClientConfig (15s)
	ReapInterval     time.Duration // how often idle per-user containers and pools are checked (1s)
	OpenTimeout      time.Duration // bounds a whole Open, engine calls included (60s)

	// Registry and HeartbeatExpiry: the registry of containers shared by
	// the gates of one store (see container.Registry); nil: none.
	Registry        container.Registry
	HeartbeatExpiry time.Duration
}

// Backend is the docker target backend: the container lifecycle over the
// Docker engine.
type Backend struct {
	*container.Backend
	engine *Engine
}

var _ target.Backend = (*Backend)(nil)

// New makes a Backend. api may be nil: a client is then made from the
// environment (DOCKER_HOST, DOCKER_CERT_PATH...) with API version negotiation
// (engines down to API 1.41 are supported). New does no I/O on the engine.
func New(cfg Config, api client.APIClient) (*Backend, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("backend", "docker")
	ownAPI := false
	if api == nil {
		c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, fmt.Errorf("docker client: %w", err)
		}
		api, ownAPI = c, true
	}
	closeAPI := func() {
		if c, ok := api.(*client.Client); ok && ownAPI {
			c.Close()
		}
	}
	switch cfg.Transport {
	case TransportAuto:
		if strings.HasPrefix(api.DaemonHost(), "unix://") {
			cfg.Transport = TransportSocket
		} else {
			cfg.Transport = TransportExec
		}
	case TransportSocket, TransportExec:
	default:
		closeAPI()
		return nil, fmt.Errorf("unknown docker transport %q (socket or exec)", cfg.Transport)
	}
	if cfg.Transport == TransportExec && cfg.ReadonlyRootfs {
		closeAPI()
		return nil, errors.New("docker: a read-only root filesystem is not available with the exec transport")
	}
	if cfg.ContainersDir != "" {
		abs, err := filepath.Abs(cfg.ContainersDir)
		if err != nil {
			closeAPI()
			return nil, fmt.Errorf("containers directory: %w", err)
		}
		cfg.ContainersDir = abs
	}
	if cfg.DataDir == "" && cfg.ContainersDir != "" {
		cfg.DataDir = filepath.Dir(cfg.ContainersDir)
	}
	if cfg.GateID == "" {
		sum := sha256.Sum256([]byte(cfg.ContainersDir + "|" + api.DaemonHost()))
		cfg.GateID = hex.EncodeToString(sum[:6])
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = 60 * time.Second
	}
	eng, err := NewEngine(EngineConfig{
		Local:          cfg.Transport == TransportSocket,
		Deny:           append(append([]string{}, cfg.DenyMounts...), cfg.DataDir, cfg.ContainersDir),
		ReadonlyRootfs: cfg.ReadonlyRootfs,
		DefaultMemory:  cfg.DefaultMemory,
		DefaultPids:    cfg.DefaultPids,
		CreateTimeout:  cfg.OpenTimeout,
		CloseClient:    ownAPI,
		Logger:         log,
	}, api)
	if err != nil {
		closeAPI()
		return nil, err
	}
	lc, err := container.New(container.Config{
		AgentPath:        cfg.AgentPath,
		ContainersDir:    cfg.ContainersDir,
		GateID:           cfg.GateID,
		Transport:        cfg.Transport,
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
		Registry:         cfg.Registry,
		HeartbeatExpiry:  cfg.HeartbeatExpiry,
	}, eng)
	if err != nil {
		eng.Close()
		return nil, err
	}
	return &Backend{Backend: lc, engine: eng}, nil
}

// Ping checks that the engine answers and returns its version and the
// negotiated API version, for readiness checks and the startup log.
func (b *Backend) Ping(ctx context.Context) (engine, api string, err error) {
	return b.engine.Ping(ctx)
}

// Close removes every container of the backend (see container.Backend.Close)
// and closes the engine client if New made it.
func (b *Backend) Close(ctx context.Context) error {
	err := b.Backend.Close(ctx)
	b.engine.Close()
	return err
}
