// Package container is the container lifecycle, written once for every
// engine: it launches a container when a user connects and speaks SSH to
// sshgate-agent inside it. It owns per-connection containers, per-user
// containers kept for an idle TTL, warm pools, orphan reaping by labels,
// agent injection (what goes into the container and how the agent is
// started), the connection to the agent, and the line the user sees when a
// container goes away mid-session. The engine (Docker, Kubernetes) is behind
// the Engine interface and holds only engine specifics.
//
// Socket transport (a local engine): the gate creates a directory per
// container under ContainersDir holding a fresh agent host key, a one-time
// authorized key and a unix socket on which the gate listens; the directory
// is bind-mounted read-only at DirMount, the agent binary at AgentMount, and
// the agent dials the socket. The data path is a unix socket (about 30x an
// exec stream).
//
// Exec transport (any engine): the agent and keys are put into the
// container before it starts, and each connection is `sshgate-agent
// --stdio` over an exec stream.
//
// Must not import: sshd/... relay broker store/... auth/... policy app target/docker target/upstream
package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sshgate/sshgate/internal/target"
)

// Labels put on every container the gate creates.
const (
	LabelGate   = "sshgate.gate"   // Config.GateID
	LabelUser   = "sshgate.user"   // gate user (not set on pool containers)
	LabelConn   = "sshgate.conn"   // connection ID (first one for per-user)
	LabelTarget = "sshgate.target" // target name
	LabelPool   = "sshgate.pool"   // "1" for warm pool containers
	LabelPer    = "sshgate.per"    // "connection" or "user"
	LabelDir    = "sshgate.dir"    // the gate directory ID under ContainersDir
)

// Transports.
const (
	TransportSocket = "socket" // unix socket in a bind-mounted directory (local engine)
	TransportExec   = "exec"   // agent --stdio over an exec stream (any engine)
)

// In-container paths. The gate-owned directory is mounted (or copied) at
// DirMount; the agent binary at AgentMount.
const (
	DirMount           = "/run/sshgate"
	AgentMount         = "/run/sshgate-agent"
	hostKeyFile        = "host_key"
	authorizedKeysFile = "authorized_keys"
	socketFile         = "gate.sock"
)

// Config configures the lifecycle. Zero durations get the defaults named.
type Config struct {
	// AgentPath is the static sshgate-agent binary put into containers.
	// Default: sshgate-agent beside os.Executable(), else from $PATH.
	AgentPath string
	// ContainersDir holds the per-container directories. Required for the
	// socket transport.
	ContainersDir string
	// GateID is the value of the sshgate.gate label identifying this gate
	// instance; ReapOrphans removes every container carrying it. Required.
	GateID string
	// Transport is TransportSocket or TransportExec. Required.
	Transport string
	// AllowRoot lets a container run as uid 0 (the image default or User
	// "root"/"0"). Off by default: with no user given and an image whose
	// user is root or empty, the container runs as 65534:65534. An engine
	// that remaps uid 0 to an unprivileged node uid allows it anyway.
	AllowRoot bool
	// Started, if set, is told of every container start and its outcome
	// (nil, or why the container did not come up): for metrics.
	Started func(err error)
	Logger  *slog.Logger
	// Now is the clock for idle TTLs (time.Now).
	Now func() time.Time

	DefaultIdleTTL   time.Duration // per-user containers whose spec has none (15m)
	PoolIdleTTL      time.Duration // drains the pool of a target not opened for this long (30m)
	AgentTimeout     time.Duration // bounds the wait for the agent to connect (15s)
	RemoveTimeout    time.Duration // bounds a container removal (15s)
	HandshakeTimeout time.Duration // put in the returned ssh.ClientConfig (15s)
	ReapInterval     time.Duration // how often idle containers and pools are checked (1s)
	OpenTimeout      time.Duration // bounds a whole Open, engine calls included (60s)
	// PoolFills bounds how many pool refills create and start containers
	// at once, over all pools (2). A live Open never waits for this bound:
	// refills queue behind it, so a burst of connections is not slowed by
	// the background work it causes.
	PoolFills int

	// Registry, if set, is the registry of containers shared by the gates
	// of one store (see Registry); nil: this gate's containers are its own.
	Registry Registry
	// HeartbeatExpiry is how old a gate's heartbeat gets before the gate
	// counts as dead and its containers may be adopted or reaped (30s).
	HeartbeatExpiry time.Duration
}

// Backend is the container target backend over one Engine.
type Backend struct {
	cfg Config
	eng Engine
	log *slog.Logger

	bg     context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the reaper
	fills  sync.WaitGroup // pool fills
	// fillSlots holds one token per pool fill creating a container now
	// (capacity Config.PoolFills).
	fillSlots chan struct{}
	// liveStarts counts the containers being created and started for a
	// connection waiting on them now (cold and first per-user starts):
	// pool fills yield to them (fillOne).
	liveStarts atomic.Int32

	mu     sync.Mutex
	closed bool
	boxes  map[string]*box       // container ID -> every container we own
	dirs   map[string]bool       // gate directory IDs in use
	warm   map[string]*warmEntry // per-user containers by spec key and user
	pools  map[string]*pool      // warm pools by spec key
	// unremoved are containers whose removal failed, by ID: retried by
	// the reaper and Close (remove).
	unremoved map[string]Ref
	removals  chan struct{} // one token per removal in flight (maxRemovals)
}

var _ target.Backend = (*Backend)(nil)

// New makes a Backend over eng and starts its reaper (ended by Close). It
// does no I/O on the engine.
func New(cfg Config, eng Engine) (*Backend, error) {
	if eng == nil {
		return nil, errors.New("container: no engine")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GateID == "" {
		return nil, errors.New("container: a gate ID is required")
	}
	switch cfg.Transport {
	case TransportSocket:
		if cfg.ContainersDir == "" {
			return nil, errors.New("container: ContainersDir is required for the socket transport")
		}
	case TransportExec:
	default:
		return nil, fmt.Errorf("unknown container transport %q (socket or exec)", cfg.Transport)
	}
	if cfg.AgentPath == "" {
		p, err := findAgent()
		if err != nil {
			return nil, err
		}
		cfg.AgentPath = p
	}
	abs, err := filepath.Abs(cfg.AgentPath)
	if err != nil {
		return nil, fmt.Errorf("agent path: %w", err)
	}
	cfg.AgentPath = abs
	if st, err := os.Stat(cfg.AgentPath); err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	} else if !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("agent binary %s is not an executable file", cfg.AgentPath)
	}
	if cfg.ContainersDir != "" {
		if cfg.ContainersDir, err = filepath.Abs(cfg.ContainersDir); err != nil {
			return nil, fmt.Errorf("containers directory: %w", err)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DefaultIdleTTL, 15*time.Minute)
	def(&cfg.PoolIdleTTL, 30*time.Minute)
	def(&cfg.AgentTimeout, 15*time.Second)
	def(&cfg.RemoveTimeout, 15*time.Second)
	def(&cfg.HandshakeTimeout, 15*time.Second)
	def(&cfg.ReapInterval, time.Second)
	def(&cfg.OpenTimeout, 60*time.Second)
	def(&cfg.HeartbeatExpiry, 30*time.Second)
	if cfg.PoolFills <= 0 {
		cfg.PoolFills = 2
	}
	b := &Backend{cfg: cfg, eng: eng, log: cfg.Logger, boxes: map[string]*box{}, dirs: map[string]bool{},
		unremoved: map[string]Ref{}, removals: make(chan struct{}, maxRemovals),
		warm: map[string]*warmEntry{}, pools: map[string]*pool{}, fillSlots: make(chan struct{}, cfg.PoolFills)}
	b.bg, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go b.reaper()
	return b, nil
}

// findAgent is where New looks for the agent binary when none is given:
// sshgate-agent beside the running executable, else in $PATH.
func findAgent() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "sshgate-agent")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath("sshgate-agent")
	if err != nil {
		return "", errors.New("sshgate-agent not found beside the gate binary nor in $PATH (set the agent path)")
	}
	return p, nil
}

// GateID is the label value identifying this gate's containers.
func (b *Backend) GateID() string { return b.cfg.GateID }

// Transport is the transport in use ("socket" or "exec").
func (b *Backend) Transport() string { return b.cfg.Transport }

// AgentPath is the agent binary put into containers.
func (b *Backend) AgentPath() string { return b.cfg.AgentPath }

// Close removes the pool and per-user containers (and every other container
// still tracked) and stops the background work. Connections still open on
// them end. With a Registry and another live gate sharing it, the per-user
// containers are handed over instead (see Registry): they stay, free for
// the other gates.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	b.fills.Wait()
	b.mu.Lock()
	all := make([]*box, 0, len(b.boxes))
	for _, bx := range b.boxes {
		all = append(all, bx)
	}
	var owned, foreign []*box
	for _, e := range b.warm {
		switch {
		case e.bx == nil:
		case e.foreign:
			foreign = append(foreign, e.bx)
		default:
			owned = append(owned, e.bx)
		}
	}
	b.pools = map[string]*pool{}
	b.warm = map[string]*warmEntry{}
	b.mu.Unlock()
	for _, bx := range foreign {
		b.dropForeign(bx)
	}
	keep := b.handOver(ctx, owned)
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	for _, bx := range all {
		if keep[bx] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.cleanup(bx); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Those that failed (now or before) get one more try.
	if err := b.retryRemovals(0); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
