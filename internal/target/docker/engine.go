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
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"

	"github.com/sshgate/sshgate/internal/gate"
	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// EngineConfig configures the Docker engine. Zero values get the defaults
// named.
type EngineConfig struct {
	// Local says the engine runs on this host: mount sources are then
	// resolved (symlinks) here before they are checked.
	Local bool
	// Deny are host paths refused as mount sources (with everything below
	// or above them), added to DefaultDenyMounts.
	Deny []string
	// ReadonlyRootfs makes the container root filesystem read-only (with a
	// tmpfs /tmp).
	ReadonlyRootfs bool
	// DefaultMemory applies when DockerSpec.Memory is 0 (default 1 GiB;
	// negative: no limit). DefaultPids likewise (default 256).
	DefaultMemory int64
	DefaultPids   int64
	// CreateTimeout bounds a container create, which is not cancelled with
	// its caller (60s).
	CreateTimeout time.Duration
	// CloseClient makes Close close the engine client.
	CloseClient bool
	Logger      *slog.Logger
}

// Engine is the Docker engine of the container lifecycle.
type Engine struct {
	api       client.APIClient
	closeOnce sync.Once
	cfg       EngineConfig
	deny      []string
	log       *slog.Logger

	infoMu sync.Mutex
	userns *bool
}

var _ lifecycle.Engine = (*Engine)(nil)

// NewEngine makes an Engine over api. It does no I/O.
func NewEngine(cfg EngineConfig, api client.APIClient) (*Engine, error) {
	if api == nil {
		return nil, errors.New("docker: no engine client")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DefaultMemory == 0 {
		cfg.DefaultMemory = 1 << 30
	}
	if cfg.DefaultPids <= 0 {
		cfg.DefaultPids = 256
	}
	if cfg.CreateTimeout <= 0 {
		cfg.CreateTimeout = 60 * time.Second
	}
	return &Engine{api: api, cfg: cfg, log: cfg.Logger, deny: append(append([]string{}, DefaultDenyMounts...), cfg.Deny...)}, nil
}

// Close closes the engine client when EngineConfig.CloseClient says so.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		if c, ok := e.api.(*client.Client); ok && e.cfg.CloseClient {
			c.Close()
		}
	})
}

// Ping checks that the engine answers and returns its version and the
// negotiated API version.
func (e *Engine) Ping(ctx context.Context) (engine, api string, err error) {
	v, err := e.api.ServerVersion(ctx)
	if err != nil {
		return "", "", fmt.Errorf("docker engine at %s: %w", e.api.DaemonHost(), err)
	}
	return v.Version, e.api.ClientVersion(), nil
}

// settings are a DockerSpec turned into engine settings.
type settings struct {
	spec    gate.DockerSpec
	mounts  []mount.Mount
	network string
	memory  int64
	pids    int64
}

// Prepare checks t's DockerSpec and translates it.
func (e *Engine) Prepare(t gate.Target) (*lifecycle.Spec, error) {
	if t.Kind != gate.KindDocker || t.Docker == nil {
		return nil, gate.Errorf(fmt.Errorf("target %s is of kind %q", t.Name, t.Kind), "target %s is not a container target", t.Name)
	}
	s := *t.Docker
	st := &settings{spec: s}
	if s.Image == "" {
		return nil, lifecycle.Failed(t.Name, errors.New("no image"), "no image is set")
	}
	// Mount sources are paths on the engine's host: resolve symlinks only
	// when that host is this one.
	var resolve func(string) (string, error)
	if e.cfg.Local {
		resolve = filepath.EvalSymlinks
	}
	for _, m := range s.Mounts {
		mm, err := ParseMount(m, e.deny, resolve)
		if err != nil {
			return nil, lifecycle.Failed(t.Name, err, "a mount is not allowed (%s)", lifecycle.Sanitize(m))
		}
		st.mounts = append(st.mounts, mm)
	}
	n, err := checkNetwork(s.Network)
	if err != nil {
		return nil, lifecycle.Failed(t.Name, err, "the network is not allowed")
	}
	st.network = n
	st.memory = s.Memory
	if st.memory == 0 {
		st.memory = max(e.cfg.DefaultMemory, 0)
	}
	if st.memory < 0 || s.NanoCPUs < 0 || s.Pids < 0 {
		return nil, lifecycle.Failed(t.Name, errors.New("negative limit"), "the limits are invalid")
	}
	st.pids = s.Pids
	if st.pids == 0 {
		st.pids = e.cfg.DefaultPids
	}
	if err := lifecycle.CheckEnv(t.Name, s.Env); err != nil {
		return nil, err
	}
	perUser, ttl, err := lifecycle.ParseMode(t.Name, s.Per, s.IdleTTL)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if s.RootInside && s.User != "" && !lifecycle.IsRootUser(s.User) {
		return nil, lifecycle.Failed(t.Name, fmt.Errorf("user %q with RootInside", s.User), "its settings are invalid (root inside, user %s)", lifecycle.Sanitize(s.User))
	}
	fmt.Fprintf(h, "%s\x00%q\x00%q\x00%q\x00%q\x00%d\x00%d\x00%d\x00%s\x00%v", t.Name, s.Image, s.User, s.Cmd, s.Env, st.memory, s.NanoCPUs, st.pids, st.network, s.RootInside)
	for _, m := range st.mounts {
		fmt.Fprintf(h, "\x00%s:%s:%v", m.Source, m.Target, m.ReadOnly)
	}
	return &lifecycle.Spec{Target: t.Name, Key: hex.EncodeToString(h.Sum(nil)[:12]), User: s.User, Cmd: s.Cmd, Env: s.Env,
		PerUser: perUser, IdleTTL: ttl, Pool: s.Pool, RootInside: s.RootInside, Engine: st}, nil
}

func settingsOf(s *lifecycle.Spec) *settings { return s.Engine.(*settings) }

// User reads the image's user and whether the engine remaps user namespaces.
func (e *Engine) User(ctx context.Context, s *lifecycle.Spec) (lifecycle.UserInfo, error) {
	image := settingsOf(s).spec.Image
	img, err := e.api.ImageInspect(ctx, image)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return lifecycle.UserInfo{}, lifecycle.Failed(s.Target, err, "image %q not found", lifecycle.Sanitize(image))
		}
		return lifecycle.UserInfo{}, engineError(s.Target, "inspect image", err)
	}
	info := lifecycle.UserInfo{Remapped: e.usernsRemap(ctx)}
	if !info.Remapped {
		info.NotRemapped = NotRemapped
	}
	if img.Config != nil {
		info.Default = img.Config.User
	}
	return info, nil
}

// NotRemapped is why root inside is refused on an engine without user
// namespace remapping.
const NotRemapped = "the Docker engine runs without userns-remap, so root in the container would be root on the host"

// usernsRemap reports whether the engine remaps user namespaces (container
// root is then not host root). Cached after the first successful answer.
func (e *Engine) usernsRemap(ctx context.Context) bool {
	e.infoMu.Lock()
	defer e.infoMu.Unlock()
	if e.userns != nil {
		return *e.userns
	}
	info, err := e.api.Info(ctx)
	if err != nil {
		return false
	}
	v := false
	for _, o := range info.SecurityOptions {
		if strings.Contains(o, "name=userns") || strings.Contains(o, "name=rootless") {
			v = true
		}
	}
	e.userns = &v
	return v
}

// Create makes the container, hardened: no privilege, every capability
// dropped, no-new-privileges, a private IPC namespace, no restart, the
// spec's limits; then copies req.Files in.
func (e *Engine) Create(ctx context.Context, req lifecycle.CreateRequest) (lifecycle.Ref, error) {
	st := settingsOf(req.Spec)
	ref := lifecycle.Ref{Name: ContainerName(req.Spec.Target, req.Suffix), Target: req.Spec.Target}
	var mounts []mount.Mount
	for _, b := range req.Binds {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: b.Source, Target: b.Target, ReadOnly: true,
			BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate}})
	}
	mounts = append(mounts, st.mounts...)
	cfg := &container.Config{
		Hostname:        lifecycle.Hostname(req.Spec.Target),
		User:            req.User,
		Env:             req.Env,
		Entrypoint:      req.Entrypoint,
		Cmd:             nil,
		Image:           st.spec.Image,
		Labels:          req.Labels,
		NetworkDisabled: st.network == "none",
		StopTimeout:     ptr(1),
	}
	tmpfs := map[string]string{}
	if e.cfg.ReadonlyRootfs {
		tmpfs["/tmp"] = "rw,nosuid,nodev,size=64m,mode=1777"
	}
	host := &container.HostConfig{
		NetworkMode:    container.NetworkMode(st.network),
		Mounts:         mounts,
		AutoRemove:     false,
		Privileged:     false,
		CapDrop:        capDrop(req.Spec.RootInside),
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: e.cfg.ReadonlyRootfs,
		IpcMode:        container.IPCModePrivate,
		Init:           ptr(false),
		Tmpfs:          tmpfs,
		Resources: container.Resources{
			Memory:    st.memory,
			NanoCPUs:  st.spec.NanoCPUs,
			PidsLimit: &st.pids,
		},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
	}
	// The engine may finish a create whose request was cancelled, leaving a
	// container whose ID we never learn. So the create itself is not
	// cancelled by the caller (it is short, and bounded by CreateTimeout); a
	// cancellation is noticed right after, with the ID known for cleanup.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.CreateTimeout)
	resp, err := e.api.ContainerCreate(cctx, cfg, host, nil, nil, ref.Name)
	ccancel()
	if err == nil {
		ref.ID = resp.ID
		err = ctx.Err()
	}
	if err != nil {
		if cerrdefs.IsNotFound(err) && strings.Contains(strings.ToLower(err.Error()), "image") {
			return ref, lifecycle.Failed(ref.Target, err, "image %q not found", lifecycle.Sanitize(st.spec.Image))
		}
		return ref, engineError(ref.Target, "create container "+ref.Name, err)
	}
	if len(req.Files) > 0 {
		if err := e.copyIn(ctx, ref.ID, req.Files); err != nil {
			return ref, engineError(ref.Target, "copy agent into "+ref.Name, err)
		}
	}
	return ref, nil
}

func ptr[T any](v T) *T { return &v }

// capDrop: every capability, except for root inside a remapped user
// namespace, which keeps the engine's default set (acting in that
// namespace only) so that root can chown, install packages and so on.
func capDrop(rootInside bool) []string {
	if rootInside {
		return nil
	}
	return []string{"ALL"}
}
