// Package docker is the target backend that launches a container when a
// user connects and speaks SSH to sshgate-agent inside it.
//
// Local engine (DOCKER_HOST unix://, the default): the gate creates a
// directory per container under the data directory holding a fresh agent
// host key, a one-time authorized key and a unix socket gate.sock on which
// the gate listens; the directory is bind-mounted read-only at /run/sshgate,
// the agent binary at /run/sshgate-agent, and the agent dials the socket.
// The data path is a unix socket (about 30x a docker exec stream).
//
// Remote engine (tcp:// or Transport "exec"): the agent and keys are copied in
// through the archive API and each connection is `sshgate-agent --stdio` over
// a hijacked exec stream.
//
// Must not import: sshd/... relay broker store/... auth/... policy app target/upstream
package docker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
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
	TransportAuto   = ""
	TransportSocket = "socket" // unix socket in a bind-mounted directory (local engine)
	TransportExec   = "exec"   // agent --stdio over a docker exec stream (any engine)
)

// Config configures the backend. Zero values get the defaults named.
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
	// hash of ContainersDir.
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
	// AllowRoot lets a container run as uid 0 (the image default or User
	// "root"/"0"). Off by default: with no user given and an image whose
	// user is root or empty, the container runs as 65534:65534.
	AllowRoot bool
	// DefaultMemory applies when DockerSpec.Memory is 0 (default 1 GiB;
	// negative: no limit). DefaultPids likewise (default 256).
	DefaultMemory int64
	DefaultPids   int64
	// DefaultIdleTTL for per-user containers whose IdleTTL is empty (15m).
	DefaultIdleTTL time.Duration
	// PoolIdleTTL drains the pool of a target not opened for this long (30m).
	PoolIdleTTL time.Duration
	// AgentTimeout bounds the wait for the agent to connect (15s).
	AgentTimeout time.Duration
	// RemoveTimeout bounds a container removal (15s).
	RemoveTimeout time.Duration
	// HandshakeTimeout is put in the returned ssh.ClientConfig (15s).
	HandshakeTimeout time.Duration
	// ReapInterval is how often idle per-user containers and pools are
	// checked (1s).
	ReapInterval time.Duration
	// OpenTimeout bounds a whole Open, engine calls included (60s).
	OpenTimeout time.Duration
}

// Backend is the docker target backend.
type Backend struct {
	cfg       Config
	api       client.APIClient
	ownAPI    bool
	log       *slog.Logger
	transport string
	deny      []string

	bg     context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	boxes  map[string]*box       // container ID -> every container we own
	dirs   map[string]bool       // gate directory IDs in use
	warm   map[string]*warmEntry // per-user containers by warmKey
	pools  map[string]*pool      // warm pools by spec key

	infoOnce sync.Mutex
	userns   *bool
}

var _ target.Backend = (*Backend)(nil)

// New makes a Backend. api may be nil: a client is then made from the
// environment (DOCKER_HOST, DOCKER_CERT_PATH...) with API version negotiation
// (engines down to API 1.41 are supported). New does no I/O on the engine.
func New(cfg Config, api client.APIClient) (*Backend, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Backend{log: cfg.Logger.With("backend", "docker"), boxes: map[string]*box{}, dirs: map[string]bool{},
		warm: map[string]*warmEntry{}, pools: map[string]*pool{}}
	if api == nil {
		c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, fmt.Errorf("docker client: %w", err)
		}
		api, b.ownAPI = c, true
	}
	b.api = api
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
	switch cfg.Transport {
	case TransportAuto:
		if strings.HasPrefix(api.DaemonHost(), "unix://") {
			cfg.Transport = TransportSocket
		} else {
			cfg.Transport = TransportExec
		}
	case TransportSocket, TransportExec:
	default:
		return nil, fmt.Errorf("unknown docker transport %q (socket or exec)", cfg.Transport)
	}
	if cfg.Transport == TransportExec && cfg.ReadonlyRootfs {
		return nil, errors.New("docker: a read-only root filesystem is not available with the exec transport")
	}
	if cfg.ContainersDir == "" && cfg.Transport == TransportSocket {
		return nil, errors.New("docker: ContainersDir is required for the socket transport")
	}
	if cfg.ContainersDir != "" {
		if cfg.ContainersDir, err = filepath.Abs(cfg.ContainersDir); err != nil {
			return nil, fmt.Errorf("containers directory: %w", err)
		}
	}
	if cfg.DataDir == "" && cfg.ContainersDir != "" {
		cfg.DataDir = filepath.Dir(cfg.ContainersDir)
	}
	if cfg.GateID == "" {
		sum := sha256.Sum256([]byte(cfg.ContainersDir + "|" + api.DaemonHost()))
		cfg.GateID = hex.EncodeToString(sum[:6])
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
	if cfg.DefaultMemory == 0 {
		cfg.DefaultMemory = 1 << 30
	}
	if cfg.DefaultPids <= 0 {
		cfg.DefaultPids = 256
	}
	b.cfg = cfg
	b.transport = cfg.Transport
	b.deny = append(append(append([]string{}, DefaultDenyMounts...), cfg.DenyMounts...), cfg.DataDir, cfg.ContainersDir)
	b.bg, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go b.reaper()
	return b, nil
}

func findAgent() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "sshgate-agent")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath("sshgate-agent")
	if err != nil {
		return "", errors.New("docker: sshgate-agent not found beside the gate binary nor in $PATH (set the agent path)")
	}
	return p, nil
}

// Ping checks that the engine answers and returns its version and the
// negotiated API version, for readiness checks and the startup log.
func (b *Backend) Ping(ctx context.Context) (engine, api string, err error) {
	v, err := b.api.ServerVersion(ctx)
	if err != nil {
		return "", "", fmt.Errorf("docker engine at %s: %w", b.api.DaemonHost(), err)
	}
	return v.Version, b.api.ClientVersion(), nil
}

// GateID is the label value identifying this gate's containers.
func (b *Backend) GateID() string { return b.cfg.GateID }

// Transport is the transport in use ("socket" or "exec").
func (b *Backend) Transport() string { return b.transport }

// box is one container owned by the gate.
type box struct {
	id, name string
	dirID    string
	target   string
	keys     *keys
	dir      *gateDir // nil with the exec transport
	execUser string   // user for docker exec, as in the container config
	agentEnv []string // --env arguments
	keeper   bool     // main process is the long-lived agent (exec-dial)
	cmd      []string // DockerSpec.Cmd, started beside the agent
	started  time.Time
}

// built is a validated DockerSpec turned into engine settings.
type built struct {
	target  string
	key     string // identifies the spec, for pools and per-user reuse
	spec    gate.DockerSpec
	user    string
	mounts  []mount.Mount
	network string
	memory  int64
	pids    int64
	perUser bool
	idleTTL time.Duration
}

func (b *Backend) build(t gate.Target) (*built, error) {
	if t.Kind != gate.KindDocker || t.Docker == nil {
		return nil, gate.Errorf(fmt.Errorf("target %s is of kind %q", t.Name, t.Kind), "target %s is not a container target", t.Name)
	}
	s := *t.Docker
	bs := &built{target: t.Name, spec: s, user: s.User}
	if s.Image == "" {
		return nil, publicf(t.Name, errors.New("no image"), "no image is set")
	}
	// Mount sources are paths on the engine's host: resolve symlinks only
	// when that host is this one (socket transport).
	var resolve func(string) (string, error)
	if b.transport == TransportSocket {
		resolve = filepath.EvalSymlinks
	}
	for _, m := range s.Mounts {
		mm, err := ParseMount(m, b.deny, resolve)
		if err != nil {
			return nil, publicf(t.Name, err, "a mount is not allowed (%s)", sanitize(m))
		}
		bs.mounts = append(bs.mounts, mm)
	}
	n, err := checkNetwork(s.Network)
	if err != nil {
		return nil, publicf(t.Name, err, "the network is not allowed")
	}
	bs.network = n
	bs.memory = s.Memory
	if bs.memory == 0 {
		bs.memory = max(b.cfg.DefaultMemory, 0)
	}
	if bs.memory < 0 || s.NanoCPUs < 0 || s.Pids < 0 {
		return nil, publicf(t.Name, errors.New("negative limit"), "the limits are invalid")
	}
	bs.pids = s.Pids
	if bs.pids == 0 {
		bs.pids = b.cfg.DefaultPids
	}
	for _, e := range s.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" || strings.ContainsAny(e, "\x00") {
			return nil, publicf(t.Name, fmt.Errorf("env %q", e), "an environment variable is invalid")
		}
	}
	switch s.Per {
	case "", "connection":
	case "user":
		bs.perUser = true
		bs.idleTTL = b.cfg.DefaultIdleTTL
		if s.IdleTTL != "" {
			d, err := time.ParseDuration(s.IdleTTL)
			if err != nil || d <= 0 {
				return nil, publicf(t.Name, fmt.Errorf("idle ttl %q: %v", s.IdleTTL, err), "the idle TTL is invalid")
			}
			bs.idleTTL = d
		}
	default:
		return nil, publicf(t.Name, fmt.Errorf("per %q", s.Per), "the container mode is invalid")
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%q\x00%q\x00%q\x00%q\x00%d\x00%d\x00%d\x00%s", t.Name, s.Image, s.User, s.Cmd, s.Env, bs.memory, s.NanoCPUs, bs.pids, bs.network)
	for _, m := range bs.mounts {
		fmt.Fprintf(h, "\x00%s:%s:%v", m.Source, m.Target, m.ReadOnly)
	}
	bs.key = hex.EncodeToString(h.Sum(nil)[:12])
	return bs, nil
}

func sanitize(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// resolveUser picks the container user and refuses uid 0 unless allowed.
func (b *Backend) resolveUser(ctx context.Context, bs *built) (string, error) {
	img, err := b.api.ImageInspect(ctx, bs.spec.Image)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", publicf(bs.target, err, "image %q not found", sanitize(bs.spec.Image))
		}
		return "", engineError(bs.target, "inspect image", err)
	}
	u := bs.user
	if u == "" && img.Config != nil {
		u = img.Config.User
	}
	if u == "" || isRootUser(u) {
		if b.cfg.AllowRoot || b.usernsRemap(ctx) {
			return u, nil
		}
		if bs.user != "" {
			return "", publicf(bs.target, fmt.Errorf("user %q is root and AllowRoot is off", bs.user), "running as root is not allowed")
		}
		return "65534:65534", nil
	}
	return u, nil
}

// usernsRemap reports whether the engine remaps user namespaces (container
// root is then not host root). Cached after the first successful answer.
func (b *Backend) usernsRemap(ctx context.Context) bool {
	b.infoOnce.Lock()
	defer b.infoOnce.Unlock()
	if b.userns != nil {
		return *b.userns
	}
	info, err := b.api.Info(ctx)
	if err != nil {
		return false
	}
	v := false
	for _, o := range info.SecurityOptions {
		if strings.Contains(o, "name=userns") || strings.Contains(o, "name=rootless") {
			v = true
		}
	}
	b.userns = &v
	return v
}

func randomID(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	for i := range buf {
		buf[i] = alphabet[int(buf[i])%len(alphabet)]
	}
	return string(buf)
}

// agentArgs are the arguments shared by every agent invocation. The spec's
// environment reaches sessions through the container's (and each exec's)
// environment, which the agent passes on; it is not repeated as --env, so
// that values do not show in process listings.
func agentArgs([]string) []string {
	return []string{"--host-key", DirMount + "/" + hostKeyFile, "--authorized-keys", DirMount + "/" + authorizedKeysFile}
}

// create makes (but does not start) a container for bs. keeper selects the
// long-lived agent as main process; otherwise the agent dials gate.sock and
// serves that one connection. labels are added to the gate's own.
func (b *Backend) create(ctx context.Context, bs *built, keeper bool, labels map[string]string) (_ *box, err error) {
	user, err := b.resolveUser(ctx, bs)
	if err != nil {
		return nil, err
	}
	k, err := newKeys()
	if err != nil {
		return nil, publicf(bs.target, err, "the gate could not prepare it")
	}
	suffix := randomID(10)
	bx := &box{name: ContainerName(bs.target, suffix), dirID: suffix, target: bs.target, keys: k, execUser: user,
		agentEnv: bs.spec.Env, keeper: keeper, cmd: bs.spec.Cmd, started: time.Now()}
	if !b.reserveDir(suffix) {
		return nil, publicf(bs.target, errors.New("gate is closed"), "the gate is shutting down")
	}
	defer func() {
		if err != nil {
			b.cleanup(bx)
		}
	}()
	var mounts []mount.Mount
	if b.transport == TransportSocket {
		uid, gid := -1, -1
		if u, g, ok := numericUser(user); ok && !b.usernsRemap(ctx) {
			uid, gid = u, g
		}
		d, err := createGateDir(b.cfg.ContainersDir, suffix, k, uid, gid)
		if err != nil {
			return nil, publicf(bs.target, err, "the gate could not prepare it")
		}
		bx.dir = d
		mounts = append(mounts,
			mount.Mount{Type: mount.TypeBind, Source: d.path, Target: DirMount, ReadOnly: true,
				BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate}},
			mount.Mount{Type: mount.TypeBind, Source: b.cfg.AgentPath, Target: AgentMount, ReadOnly: true,
				BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate}})
	}
	mounts = append(mounts, bs.mounts...)

	entry := append([]string{AgentMount}, agentArgs(bs.spec.Env)...)
	if keeper {
		// The agent's --listen is TCP only: the container's own loopback
		// (network none keeps it unreachable from outside; it accepts only
		// the gate's one-time key). It only keeps PID 1 alive and reaping.
		entry = append(entry, "--listen", "127.0.0.1:0", "--reap")
	} else {
		entry = append(entry, "--dial", "unix:"+DirMount+"/"+socketFile, "--reap")
	}
	lbl := map[string]string{LabelGate: b.cfg.GateID, LabelTarget: bs.target, LabelDir: suffix}
	for k, v := range labels {
		lbl[k] = v
	}
	cfg := &container.Config{
		Hostname:        hostname(bs.target),
		User:            user,
		Env:             containerEnv(bs.spec.Env),
		Entrypoint:      entry,
		Cmd:             nil,
		Image:           bs.spec.Image,
		Labels:          lbl,
		NetworkDisabled: bs.network == "none",
		StopTimeout:     ptr(1),
	}
	tmpfs := map[string]string{}
	if b.cfg.ReadonlyRootfs {
		tmpfs["/tmp"] = "rw,nosuid,nodev,size=64m,mode=1777"
	}
	host := &container.HostConfig{
		NetworkMode:    container.NetworkMode(bs.network),
		Mounts:         mounts,
		AutoRemove:     false,
		Privileged:     false,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: b.cfg.ReadonlyRootfs,
		IpcMode:        container.IPCModePrivate,
		Init:           ptr(false),
		Tmpfs:          tmpfs,
		Resources: container.Resources{
			Memory:    bs.memory,
			NanoCPUs:  bs.spec.NanoCPUs,
			PidsLimit: &bs.pids,
		},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
	}
	// The engine may finish a create whose request was cancelled, leaving a
	// container whose ID we never learn. So the create itself is not
	// cancelled by the caller (it is short, and bounded by OpenTimeout); a
	// cancellation is noticed right after, with the ID known for cleanup.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.OpenTimeout)
	resp, err := b.api.ContainerCreate(cctx, cfg, host, nil, nil, bx.name)
	ccancel()
	if err == nil {
		bx.id = resp.ID
		err = ctx.Err()
	}
	if err != nil {
		if cerrdefs.IsNotFound(err) && strings.Contains(strings.ToLower(err.Error()), "image") {
			return nil, publicf(bs.target, err, "image %q not found", sanitize(bs.spec.Image))
		}
		return nil, engineError(bs.target, "create container "+bx.name, err)
	}
	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.boxes[bx.id] = bx
	}
	b.mu.Unlock()
	if closed { // Close already took its list: remove it here
		return nil, publicf(bs.target, errors.New("gate is closed"), "the gate is shutting down")
	}
	if b.transport == TransportExec {
		if err := b.copyIn(ctx, bx); err != nil {
			return nil, engineError(bs.target, "copy agent into "+bx.name, err)
		}
	}
	return bx, nil
}

func ptr[T any](v T) *T { return &v }

// containerEnv is the spec's environment, with HOME set empty unless the
// spec sets it: the engine then fills in the user's home from the image's
// /etc/passwd, as sshd would, instead of an image-wide HOME (often /root,
// which a non-root user cannot enter).
func containerEnv(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			return append([]string{}, env...)
		}
	}
	return append([]string{"HOME="}, env...)
}

func (b *Backend) reserveDir(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.dirs[id] = true
	return true
}

// cleanup removes a container and its directory. Safe on partial boxes.
func (b *Backend) cleanup(bx *box) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.RemoveTimeout)
	defer cancel()
	var errs []error
	if bx.id != "" {
		err := b.api.ContainerRemove(ctx, bx.id, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) && !isRemovalInProgress(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", bx.name, err))
		}
	}
	if err := bx.dir.remove(); err != nil {
		errs = append(errs, fmt.Errorf("remove directory of %s: %w", bx.name, err))
	}
	b.mu.Lock()
	if bx.id != "" {
		delete(b.boxes, bx.id)
	}
	delete(b.dirs, bx.dirID)
	b.mu.Unlock()
	return errors.Join(errs...)
}

func isRemovalInProgress(err error) bool {
	return strings.Contains(err.Error(), "is already in progress")
}

// start starts the container and, for a dialing main process, waits for
// the agent's connection.
func (b *Backend) start(ctx context.Context, bx *box) (_ net.Conn, err error) {
	if b.cfg.Started != nil {
		defer func() { b.cfg.Started(err) }()
	}
	var l *net.UnixListener
	if !bx.keeper {
		var err error
		if l, err = bx.dir.listen(socketFile); err != nil {
			return nil, publicf(bx.target, err, "the gate could not prepare it")
		}
		defer func() {
			l.Close()
			os.Remove(filepath.Join(bx.dir.path, socketFile))
		}()
	}
	if err := b.api.ContainerStart(ctx, bx.id, container.StartOptions{}); err != nil {
		return nil, b.startError(bx, err)
	}
	if bx.keeper {
		return nil, b.runCmd(ctx, bx)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan error, 1)
	go func() {
		waitC, errC := b.api.ContainerWait(wctx, bx.id, container.WaitConditionNotRunning)
		select {
		case w := <-waitC:
			failed <- fmt.Errorf("container exited with status %d before its agent connected%s", w.StatusCode, b.logTail(bx))
		case err := <-errC:
			if wctx.Err() == nil {
				failed <- fmt.Errorf("wait for container: %w", err)
			}
		}
	}()
	conn, err := b.accept(ctx, bx, l, failed)
	if err != nil {
		return nil, err
	}
	// Only now, with the listener closed, may anything but the agent run.
	if err := b.runCmd(ctx, bx); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// runCmd starts the spec's command beside the agent (PID 1, which reaps)
// as the container user, detached; it ends with the container.
func (b *Backend) runCmd(ctx context.Context, bx *box) error {
	if len(bx.cmd) == 0 {
		return nil
	}
	ex, err := b.api.ContainerExecCreate(ctx, bx.id, container.ExecOptions{User: bx.execUser, Cmd: bx.cmd, Env: containerEnv(bx.agentEnv)})
	if err == nil {
		err = b.api.ContainerExecStart(ctx, ex.ID, container.ExecStartOptions{Detach: true})
	}
	if err != nil {
		return publicf(bx.target, fmt.Errorf("run the container command: %w", err), "its command could not run")
	}
	return nil
}

func (b *Backend) startError(bx *box, err error) error {
	low := strings.ToLower(err.Error())
	switch {
	case strings.Contains(low, "unable to find user") || strings.Contains(low, "no matching entries in passwd"):
		return publicf(bx.target, err, "the user does not exist in the image")
	case strings.Contains(low, "no such file") || strings.Contains(low, "not found") && strings.Contains(low, "mount"):
		return publicf(bx.target, err, "a mount source does not exist")
	}
	return engineError(bx.target, "start container "+bx.name, err)
}

// logTail returns the last lines of the container's output, for causes.
func (b *Backend) logTail(bx *box) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rc, err := b.api.ContainerLogs(ctx, bx.id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "5"})
	if err != nil {
		return ""
	}
	defer rc.Close()
	buf := make([]byte, 2048)
	n, _ := readFull(rc, buf)
	if n == 0 {
		return ""
	}
	return "; output: " + sanitize(strings.TrimSpace(stripMux(buf[:n])))
}

// accept waits for the agent's one connection on l, then the caller closes
// l: a second dialer finds nobody listening.
func (b *Backend) accept(ctx context.Context, bx *box, l *net.UnixListener, failed <-chan error) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	timer := time.NewTimer(b.cfg.AgentTimeout)
	defer timer.Stop()
	var cause error
	select {
	case r := <-ch:
		if r.err == nil {
			return r.c, nil
		}
		cause = fmt.Errorf("accept agent connection: %w", r.err)
	case err := <-failed:
		cause = err
	case <-timer.C:
		cause = fmt.Errorf("agent did not connect within %s%s", b.cfg.AgentTimeout, b.logTail(bx))
	case <-ctx.Done():
	}
	l.Close()
	if r := <-ch; r.c != nil {
		r.c.Close()
	}
	if cause == nil {
		return nil, engineError(bx.target, "wait for agent", ctx.Err())
	}
	return nil, publicf(bx.target, cause, "its agent did not answer")
}

// clientConfig is how the gate logs in to the agent of bx.
func (b *Backend) clientConfig(bx *box, login string) *ssh.ClientConfig {
	cc := &ssh.ClientConfig{
		User:              login,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(bx.keys.client)},
		HostKeyCallback:   sshkeys.PinnedHostKey(bx.keys.hostPub),
		HostKeyAlgorithms: sshkeys.HostKeyAlgorithms(bx.keys.hostPub),
		Timeout:           b.cfg.HandshakeTimeout,
		ClientVersion:     "SSH-2.0-sshgate",
	}
	cc.Ciphers = sshkeys.ClientCiphers
	return cc
}

// Open starts (or reuses) a container for req and returns a connection to
// its agent.
func (b *Backend) Open(ctx context.Context, req target.Request) (*target.Upstream, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpenTimeout)
	defer cancel()
	bs, err := b.build(req.Target)
	if err != nil {
		return nil, err
	}
	login := req.Login
	if login == "" {
		login = req.Target.Login
	}
	user := ""
	if req.ID != nil {
		user = req.ID.User
	}
	log := b.log.With("conn_id", req.ConnID, "target", bs.target)
	if bs.perUser {
		return b.openWarm(ctx, bs, user, login, req.ConnID, log)
	}
	if bs.spec.Pool > 0 {
		bx := b.takePool(ctx, bs)
		// Refill after this connection's agent is up: on a small machine a
		// container start competes for the CPU the connection needs now.
		defer b.refill(bs)
		if bx != nil {
			log.Debug("container taken from pool", "container", bx.name)
			return b.connectOwned(ctx, bx, login, log)
		}
	}
	labels := map[string]string{LabelUser: user, LabelConn: req.ConnID, LabelPer: "connection"}
	keeper := b.transport == TransportExec
	bx, err := b.create(ctx, bs, keeper, labels)
	if err != nil {
		return nil, err
	}
	conn, err := b.start(ctx, bx)
	if err != nil {
		b.cleanup(bx)
		return nil, err
	}
	if keeper {
		return b.connectOwned(ctx, bx, login, log)
	}
	log.Info("container started", "container", bx.name, "id", short(bx.id), "took", time.Since(bx.started).Round(time.Millisecond))
	return b.upstream(bx, conn, login, log, func(context.Context) error { return b.cleanup(bx) }), nil
}

// connectOwned opens a connection to a running keeper container that then
// belongs to this connection alone (removed on Release).
func (b *Backend) connectOwned(ctx context.Context, bx *box, login string, log *slog.Logger) (*target.Upstream, error) {
	conn, err := b.connect(ctx, bx)
	if err != nil {
		b.cleanup(bx)
		return nil, err
	}
	return b.upstream(bx, conn, login, log, func(context.Context) error { return b.cleanup(bx) }), nil
}

// upstream returns conn with the login for bx; Release runs release once,
// after logging how the container fared. A container that dies (OOM kill,
// removal) takes the agent with it, so the connection ends by itself: the
// broker sees EOF and calls Release, which says why in the log.
func (b *Backend) upstream(bx *box, conn net.Conn, login string, log *slog.Logger, release func(context.Context) error) *target.Upstream {
	since := time.Now()
	var once, endOnce sync.Once
	var rerr error
	var why string
	report := func(ctx context.Context, settle bool) string {
		endOnce.Do(func() { why = b.reportEnd(ctx, bx, since, log, settle) })
		return why
	}
	return &target.Upstream{
		Conn:   conn,
		Client: b.clientConfig(bx, login),
		Ended:  func(ctx context.Context) string { return report(ctx, true) },
		Release: func(ctx context.Context) error {
			once.Do(func() {
				conn.Close()
				report(ctx, false)
				rerr = release(ctx)
				if rerr != nil {
					log.Error("release container", "container", bx.name, "err", rerr)
				}
			})
			return rerr
		},
	}
}

// reportEnd logs a container that ended abnormally while a connection used
// it: removed behind the gate's back, out of memory (the engine's "oom"
// events since the connection began: the kernel may have killed a session
// process and left the container running), or exited non-zero. A
// per-connection agent exiting 0 at the end of its connection is normal.
// reportEnd logs what happened to the container during the session and
// returns it as a line for the user ("" when nothing notable happened).
// With settle, the connection to the agent was lost: the engine's state may
// lag the kill by a moment, so a container still shown running is asked
// again for up to two seconds.
func (b *Backend) reportEnd(ctx context.Context, bx *box, since time.Time, log *slog.Logger, settle bool) string {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := b.api.ContainerInspect(ictx, bx.id)
	for deadline := time.Now().Add(2 * time.Second); settle && time.Now().Before(deadline) &&
		(err == nil && st.State != nil && st.State.Running || err != nil && !cerrdefs.IsNotFound(err)); {
		select {
		case <-ictx.Done():
			return ""
		case <-time.After(50 * time.Millisecond):
		}
		st, err = b.api.ContainerInspect(ictx, bx.id)
	}
	if cerrdefs.IsNotFound(err) || err == nil && st.State != nil && (st.State.Status == "removing" || st.State.Dead) {
		log.Warn("container was removed during the session", "container", bx.name)
		return fmt.Sprintf("container for %s was removed", bx.target)
	}
	if err != nil || st.State == nil {
		return ""
	}
	if ooms := b.oomEvents(ictx, bx.id, since); ooms > 0 || st.State.OOMKilled {
		log.Warn("container ran out of memory during the session", "container", bx.name, "oom_events", ooms,
			"running", st.State.Running, "exit_code", st.State.ExitCode, "memory_limit", st.HostConfig.Memory)
		return fmt.Sprintf("container for %s ran out of memory", bx.target)
	}
	if !st.State.Running && (st.State.ExitCode != 0 || bx.keeper) {
		log.Warn("container ended during the session", "container", bx.name, "exit_code", st.State.ExitCode, "error", st.State.Error)
		return fmt.Sprintf("container for %s stopped (exit code %d)", bx.target, st.State.ExitCode)
	}
	return ""
}

// oomEvents counts the engine's oom events for id since t.
func (b *Backend) oomEvents(ctx context.Context, id string, t time.Time) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := filters.NewArgs(filters.Arg("container", id), filters.Arg("event", "oom"), filters.Arg("type", "container"))
	now := time.Now()
	msgs, errs := b.api.Events(ctx, events.ListOptions{
		Since:   strconv.FormatInt(t.Unix()-1, 10),
		Until:   strconv.FormatFloat(float64(now.UnixNano())/1e9, 'f', 3, 64),
		Filters: f,
	})
	n := 0
	for {
		select {
		case <-msgs:
			n++
		case <-errs:
			return n
		case <-ctx.Done():
			return n
		}
	}
}

// connect starts a new agent for one connection in a running keeper
// container: over a fresh unix socket (socket transport) or --stdio over an
// exec stream.
func (b *Backend) connect(ctx context.Context, bx *box) (net.Conn, error) {
	if b.transport == TransportExec {
		return b.execStdio(ctx, bx)
	}
	name := "c-" + randomID(12) + ".sock"
	l, err := bx.dir.listen(name)
	if err != nil {
		return nil, publicf(bx.target, err, "the gate could not prepare it")
	}
	defer func() {
		l.Close()
		os.Remove(filepath.Join(bx.dir.path, name))
	}()
	t0 := time.Now()
	defer func() {
		b.log.Debug("agent exec", "container", bx.name, "took", time.Since(t0).Round(time.Millisecond))
	}()
	cmd := append([]string{AgentMount}, agentArgs(bx.agentEnv)...)
	cmd = append(cmd, "--dial", "unix:"+DirMount+"/"+name)
	ex, err := b.api.ContainerExecCreate(ctx, bx.id, container.ExecOptions{User: bx.execUser, Cmd: cmd, Env: containerEnv(bx.agentEnv)})
	if err != nil {
		return nil, engineError(bx.target, "exec agent in "+bx.name, err)
	}
	if err := b.api.ContainerExecStart(ctx, ex.ID, container.ExecStartOptions{Detach: true}); err != nil {
		return nil, engineError(bx.target, "start agent in "+bx.name, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan error, 1)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			st, err := b.api.ContainerExecInspect(wctx, ex.ID)
			if err != nil {
				if wctx.Err() == nil {
					failed <- fmt.Errorf("inspect agent exec: %w", err)
				}
				return
			}
			if !st.Running && st.Pid != 0 || !st.Running && st.ExitCode != 0 {
				failed <- fmt.Errorf("agent exited with status %d before it connected", st.ExitCode)
				return
			}
		}
	}()
	return b.accept(ctx, bx, l, failed)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ReapOrphans removes every container labelled with this gate's GateID that
// this Backend does not track (left by a crash or kill -9) and every stale
// directory under ContainersDir. Call it on start. It returns how many
// containers it removed.
func (b *Backend) ReapOrphans(ctx context.Context) (int, error) {
	list, err := b.api.ContainerList(ctx, container.ListOptions{All: true, Filters: labelFilter(LabelGate + "=" + b.cfg.GateID)})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	n := 0
	var errs []error
	for _, c := range list {
		b.mu.Lock()
		_, mine := b.boxes[c.ID]
		b.mu.Unlock()
		if mine {
			continue
		}
		err := b.api.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) && !isRemovalInProgress(err) {
			errs = append(errs, fmt.Errorf("remove orphan %s: %w", short(c.ID), err))
			continue
		}
		n++
		b.log.Info("removed orphan container", "id", short(c.ID), "names", c.Names)
	}
	if b.cfg.ContainersDir != "" {
		ents, err := os.ReadDir(b.cfg.ContainersDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("read containers directory: %w", err))
		}
		for _, e := range ents {
			b.mu.Lock()
			used := b.dirs[e.Name()]
			b.mu.Unlock()
			if used || !e.IsDir() {
				continue
			}
			d := &gateDir{path: filepath.Join(b.cfg.ContainersDir, e.Name())}
			if err := d.remove(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return n, errors.Join(errs...)
}

// Close removes the pool and per-user containers (and every other container
// still tracked) and stops the background work. Connections still open on
// them end.
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
	b.mu.Lock()
	all := make([]*box, 0, len(b.boxes))
	for _, bx := range b.boxes {
		all = append(all, bx)
	}
	b.pools = map[string]*pool{}
	b.warm = map[string]*warmEntry{}
	b.mu.Unlock()
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	for _, bx := range all {
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
	if b.ownAPI {
		if c, ok := b.api.(*client.Client); ok {
			c.Close()
		}
	}
	return errors.Join(errs...)
}
