package container

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// box is one container owned by the gate.
type box struct {
	id, name string
	dirID    string
	target   string
	keys     *keys
	dir      *gateDir // nil with the exec transport
	user     string   // the container user, for every exec
	env      []string // the spec's environment
	keeper   bool     // main process is the long-lived agent (exec-dial)
	cmd      []string // the spec's command, started beside the agent
	started  time.Time
	recorded bool        // has a row in the registry (under Backend.mu)
	authFile string      // this gate's authorized keys file in dir, for another gate's container ("": authorized_keys)
	warm     *warmSocket // the keeper agent's spare connections (socket transport), nil: exec an agent per connection
}

func (bx *box) ref() Ref { return Ref{ID: bx.id, Name: bx.name, Target: bx.target} }

// agentArgs are the arguments shared by every agent invocation. The spec's
// environment reaches sessions through the container's (and each exec's)
// environment, which the agent passes on; it is not repeated as --env, so
// that values do not show in process listings.
func agentArgs() []string {
	return []string{"--host-key", DirMount + "/" + hostKeyFile, "--authorized-keys", DirMount + "/" + authorizedKeysFile}
}

// create makes (but does not start) a container for s. keeper selects the
// long-lived agent as main process; otherwise the agent dials gate.sock and
// serves that one connection. labels are added to the gate's own. kind,
// if set, is recorded in the registry at once (per-user containers are
// recorded by their caller, once started).
func (b *Backend) create(ctx context.Context, s *Spec, keeper bool, labels map[string]string, kind string) (_ *box, err error) {
	info, err := b.eng.User(ctx, s)
	if err != nil {
		return nil, err
	}
	user, err := b.resolveUser(s, info)
	if err != nil {
		return nil, err
	}
	k, err := newKeys()
	if err != nil {
		return nil, Failed(s.Target, err, "the gate could not prepare it")
	}
	suffix := randomID(10)
	bx := &box{dirID: suffix, target: s.Target, keys: k, user: user, env: s.Env, keeper: keeper, cmd: s.Cmd, started: time.Now()}
	if !b.reserveDir(suffix) {
		return nil, Failed(s.Target, errors.New("gate is closed"), "the gate is shutting down")
	}
	defer func() {
		if err != nil {
			b.cleanup(bx)
		}
	}()
	req := CreateRequest{Spec: s, Suffix: suffix, User: user, Env: containerEnv(s.Env)}
	if b.cfg.Transport == TransportSocket {
		uid, gid := -1, -1
		if u, g, ok := NumericUser(user); ok && !info.Remapped {
			uid, gid = u, g
		}
		d, err := createGateDir(b.cfg.ContainersDir, suffix, k, uid, gid)
		if err != nil {
			return nil, Failed(s.Target, err, "the gate could not prepare it")
		}
		bx.dir = d
		req.Binds = []Bind{{Source: d.path, Target: DirMount}, {Source: b.cfg.AgentPath, Target: AgentMount}}
	} else {
		req.Files = b.agentFiles(bx)
	}
	req.Entrypoint = append([]string{AgentMount}, agentArgs()...)
	if keeper && bx.dir != nil {
		// The keeper agent keeps one idle connection dialed to the gate's
		// socket in the gate-owned directory and serves each one the gate
		// takes: no exec per connection (see warm.go).
		req.Entrypoint = append(req.Entrypoint, "--dial-each", "unix:"+DirMount+"/"+warmSocketFile, "--reap")
	} else if keeper {
		// The agent's --listen is TCP only: the container's own loopback
		// (network none keeps it unreachable from outside; it accepts only
		// the gate's one-time key). It only keeps PID 1 alive and reaping.
		req.Entrypoint = append(req.Entrypoint, "--listen", "127.0.0.1:0", "--reap")
	} else {
		req.Entrypoint = append(req.Entrypoint, "--dial", "unix:"+DirMount+"/"+socketFile, "--reap")
	}
	req.Labels = map[string]string{LabelGate: b.cfg.GateID, LabelTarget: s.Target, LabelDir: suffix}
	for k, v := range labels {
		req.Labels[k] = v
	}
	ref, err := b.eng.Create(ctx, req)
	bx.id, bx.name = ref.ID, ref.Name
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.boxes[bx.id] = bx
	}
	b.mu.Unlock()
	if closed { // Close already took its list: remove it here
		return nil, Failed(s.Target, errors.New("gate is closed"), "the gate is shutting down")
	}
	if kind != "" {
		b.record(ctx, bx, s, kind, labels[LabelUser], 0)
	}
	return bx, nil
}

// agentFiles are what the exec transport puts into a container: the keys
// (readable by a numeric container user alone, else by everyone in the
// container) and the agent binary.
func (b *Backend) agentFiles(bx *box) []File {
	uid, gid := 0, 0
	keyMode := fs.FileMode(0o444)
	if u, g, ok := NumericUser(bx.user); ok {
		uid, gid, keyMode = u, g, 0o400
	}
	return []File{
		{Path: DirMount + "/" + hostKeyFile, Mode: keyMode, UID: uid, GID: gid, Data: bx.keys.hostPEM},
		{Path: DirMount + "/" + authorizedKeysFile, Mode: 0o444, Data: bx.keys.authLines},
		{Path: AgentMount, Mode: 0o555, Source: b.cfg.AgentPath},
	}
}

// resolveUser picks the container user and refuses uid 0 unless allowed.
func (b *Backend) resolveUser(s *Spec, info UserInfo) (string, error) {
	if s.RootInside {
		if !info.Remapped {
			why := info.NotRemapped
			if why == "" {
				why = "the engine does not map it to an unprivileged user on the node"
			}
			return "", Failed(s.Target, fmt.Errorf("root inside: %s", why), "root inside is not allowed here: %s", why)
		}
		return "0:0", nil
	}
	u := s.User
	if u == "" {
		u = info.Default
	}
	if u == "" || IsRootUser(u) {
		if b.cfg.AllowRoot || info.Remapped {
			return u, nil
		}
		if s.User != "" {
			return "", Failed(s.Target, fmt.Errorf("user %q is root and AllowRoot is off", s.User), "running as root is not allowed")
		}
		return "65534:65534", nil
	}
	return u, nil
}

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
	var errs []error
	bx.warm.close()
	if bx.id != "" {
		if err := b.remove(bx.ref()); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s (retried at the next reap): %w", bx.name, err))
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
	b.unrecord(bx)
	return errors.Join(errs...)
}

// maxRemovals bounds the container removals the gate asks its engine for at
// once: a burst of session ends (or Close with hundreds of containers) would
// otherwise queue them all in the engine together, each timing out under
// RemoveTimeout while the engine works through the others.
const maxRemovals = 8

// remove removes r's container within RemoveTimeout, counted from when one
// of the maxRemovals slots is free. A removal that fails is remembered in
// unremoved, and retried by the reaper and by Close, so that the container
// is not left behind until the gate's next start.
func (b *Backend) remove(r Ref) error {
	b.removals <- struct{}{}
	defer func() { <-b.removals }()
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.RemoveTimeout)
	defer cancel()
	err := b.eng.Remove(ctx, r)
	b.mu.Lock()
	if err != nil {
		b.unremoved[r.ID] = r
	} else {
		delete(b.unremoved, r.ID)
	}
	b.mu.Unlock()
	return err
}

// retryRemovals removes again (at most limit of; 0: all) the containers
// whose removal failed; it returns the errors of those that fail again
// (they stay for the next try).
func (b *Backend) retryRemovals(limit int) error {
	b.mu.Lock()
	refs := make([]Ref, 0, len(b.unremoved))
	for _, r := range b.unremoved {
		if limit > 0 && len(refs) == limit {
			break
		}
		refs = append(refs, r)
	}
	b.mu.Unlock()
	var errs []error
	for _, r := range refs {
		if err := b.remove(r); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s again: %w", r.Name, err))
			continue
		}
		b.log.Info("removed container on retry", "container", r.Name, "id", short(r.ID))
	}
	return errors.Join(errs...)
}

// NumericUser parses "UID" or "UID:GID" with numbers only. ok is false for
// names ("app", "app:staff") and for the empty string.
func NumericUser(u string) (uid, gid int, ok bool) {
	if u == "" {
		return 0, 0, false
	}
	us, gs, hasGID := strings.Cut(u, ":")
	uid, err := strconv.Atoi(us)
	if err != nil || uid < 0 {
		return 0, 0, false
	}
	gid = uid
	if hasGID {
		if gid, err = strconv.Atoi(gs); err != nil || gid < 0 {
			return 0, 0, false
		}
	}
	return uid, gid, true
}

// IsRootUser reports whether the user string names uid 0 (or root).
func IsRootUser(u string) bool {
	name, _, _ := strings.Cut(u, ":")
	if name == "root" {
		return true
	}
	uid, _, ok := NumericUser(u)
	return ok && uid == 0
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

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Hostname makes a valid hostname label from a target name, or "".
func Hostname(target string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(target) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	h := strings.Trim(b.String(), "-")
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-")
	}
	return h
}
