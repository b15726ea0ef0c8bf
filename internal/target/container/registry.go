package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
)

// Registry is the shared registry of containers that the gates sharing a
// store keep (the store's containers and gates tables, through a thin
// adapter in the composition root). With one, the lifecycle:
//
//   - records every container it creates (per-user ones as
//     gate.ContainerPerUser, per-connection and pool ones as
//     gate.ContainerConn, so that their gate's death is noticed);
//   - asks it for a user's per-user container before starting one: a live
//     gate's is shared as it is (this gate connects to its agent), a free or
//     dead gate's is adopted. Before starting one it records a placeholder
//     (pendingPrefix), which the container's row replaces once it runs: a
//     gate that finds a live gate's placeholder waits for the container
//     rather than starting a second (if two gates still start one, the
//     loser removes its own and uses the winner's);
//   - writes the last use of the containers it serves every ReapInterval
//     (one statement), so that the owner does not reap a container that
//     another gate is serving;
//   - reaps, besides its own idle ones, the rows of dead gates and free
//     (handed-over) ones past their idle TTL, each removal claimed in the
//     registry first (ClaimRemoval) so that one gate removes each;
//   - hands its per-user containers over on Close when another live gate
//     shares the store, instead of removing them.
//
// Without one (nil), the lifecycle is the single gate's, unchanged.
// Sharing needs the socket transport and one engine on one host (the gates
// reach each other's gate directories); with the exec transport per-user
// containers are registered as per-connection ones and not shared.
type Registry interface {
	// PutContainer records c; false when another per-user row for the
	// same Key and User exists (another gate won the race).
	PutContainer(ctx context.Context, c gate.WarmContainer) (bool, error)
	// ReplaceContainer turns row oldID (a placeholder this gate put) into
	// c; false when that row is gone or no longer c.Gate's.
	ReplaceContainer(ctx context.Context, oldID string, c gate.WarmContainer) (bool, error)
	// ClaimContainer is the per-user container of key and user: shared as
	// it is when a live gate owns it, else adopted by gateID (adopted
	// true). found false when there is none.
	ClaimContainer(ctx context.Context, key, user, gateID string, alive time.Time) (c gate.WarmContainer, found, adopted bool, err error)
	TouchContainers(ctx context.Context, ids []string, at time.Time) error
	ListContainers(ctx context.Context) ([]gate.WarmContainer, error)
	ReleaseContainers(ctx context.Context, gateID string) (int, error)
	ClaimRemoval(ctx context.Context, id, gateID string, alive, idleBefore time.Time) (bool, error)
	RemoveContainer(ctx context.Context, id string) error
	ListGates(ctx context.Context) ([]gate.GateInfo, error)
}

// errPending: a live gate is starting the per-user container asked for.
var errPending = errors.New("another gate is starting it")

// pendingPoll is how often a gate looks again for a container another gate
// is starting.
const pendingPoll = 100 * time.Millisecond

// registryTimeout bounds one registry call made outside a connection.
const registryTimeout = 5 * time.Second

// alive is the oldest heartbeat of a gate still counted as alive.
func (b *Backend) alive() time.Time { return time.Now().Add(-b.cfg.HeartbeatExpiry) }

// shares reports whether per-user containers are shared through the
// registry (a registry and the socket transport).
func (b *Backend) shares() bool { return b.cfg.Registry != nil && b.cfg.Transport == TransportSocket }

// pendingPrefix starts the ID of a placeholder row: a per-user container
// being started by its gate.
const pendingPrefix = "pending-"

// placeholder records that this gate is starting the per-user container
// of s and user; "" when another gate recorded one first (or the registry
// failed: then the container is started without one).
func (b *Backend) placeholder(ctx context.Context, s *Spec, user string, ttl time.Duration) (id string, lost bool) {
	now := b.cfg.Now()
	id = pendingPrefix + randomID(16)
	won, err := b.cfg.Registry.PutContainer(ctx, gate.WarmContainer{ID: id, Target: s.Target, Key: s.Key, User: user,
		Kind: gate.ContainerPerUser, Gate: b.cfg.GateID, Transport: b.cfg.Transport, IdleTTL: ttl, LastUsed: now, Created: now})
	if err != nil {
		b.log.Warn("record a per-user container being started", "target", s.Target, "err", err)
		return "", false
	}
	if !won {
		return "", true
	}
	return id, false
}

// record puts bx in the registry (when there is one) as kind; for a
// per-user container false means another gate recorded one first. With a
// placeholder, bx's row replaces it.
func (b *Backend) record(ctx context.Context, bx *box, s *Spec, kind, user string, ttl time.Duration, placeholder ...string) bool {
	if b.cfg.Registry == nil {
		return true
	}
	now := b.cfg.Now()
	c := gate.WarmContainer{ID: bx.id, Name: bx.name, Target: s.Target, Key: s.Key, User: user, Kind: kind,
		Gate: b.cfg.GateID, Transport: b.cfg.Transport, RunAs: bx.user, IdleTTL: ttl, LastUsed: now, Created: now}
	if bx.dir != nil {
		c.Dir = bx.dir.path
	}
	if bx.keys != nil && bx.keys.hostPub != nil {
		c.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(bx.keys.hostPub)))
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), registryTimeout)
	defer cancel()
	var won bool
	var err error
	if len(placeholder) > 0 && placeholder[0] != "" {
		won, err = b.cfg.Registry.ReplaceContainer(rctx, placeholder[0], c)
		if err == nil && !won {
			won, err = b.cfg.Registry.PutContainer(rctx, c) // the placeholder was taken from us: try plainly
		}
	} else {
		won, err = b.cfg.Registry.PutContainer(rctx, c)
	}
	if err != nil {
		// The container still serves this gate; only other gates miss it.
		b.log.Warn("record container in the registry", "container", bx.name, "err", err)
		return true
	}
	if won {
		b.mu.Lock()
		bx.recorded = true
		b.mu.Unlock()
	}
	return won
}

// unrecord removes bx's row (cleanup).
func (b *Backend) unrecord(bx *box) {
	b.mu.Lock()
	rec := bx.recorded
	bx.recorded = false
	b.mu.Unlock()
	if !rec || b.cfg.Registry == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	if err := b.cfg.Registry.RemoveContainer(ctx, bx.id); err != nil {
		b.log.Warn("remove container from the registry", "container", bx.name, "err", err)
	}
}

// dirName is what a gate directory is called (randomID(10)).
var dirName = regexp.MustCompile(`^[a-z0-9]{10}$`)

// fromRegistry makes a box for a container another gate created (or this
// gate in an earlier life), to connect to its agent: the host key is the
// registry's, and this gate logs in with a fresh key of its own, put beside
// the other gate's in the container's directory (the agent re-reads its
// authorized keys file for every connection). The row comes from a shared
// database: its directory must look like one of a gate's, and nothing but
// the files a gate puts there is ever removed from it.
func (b *Backend) fromRegistry(c gate.WarmContainer, s *Spec) (*box, error) {
	if c.Transport != TransportSocket || b.cfg.Transport != TransportSocket {
		return nil, fmt.Errorf("container %s: transport %q cannot be shared", short(c.ID), c.Transport)
	}
	if c.ID == "" || !filepath.IsAbs(c.Dir) || filepath.Clean(c.Dir) != c.Dir || !dirName.MatchString(filepath.Base(c.Dir)) {
		return nil, fmt.Errorf("container %s: directory %q is not a gate directory", short(c.ID), c.Dir)
	}
	hostPub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.HostKey))
	if err != nil || hostPub.Type() != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("container %s: bad agent host key in the registry", short(c.ID))
	}
	st, err := os.Stat(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", short(c.ID), err)
	}
	d := &gateDir{id: filepath.Base(c.Dir), path: c.Dir, uid: -1, gid: -1, shared: true}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		d.uid, d.gid = int(sys.Uid), int(sys.Gid) // chowned to the container user by its gate
	}
	k, err := newKeys()
	if err != nil {
		return nil, err
	}
	k.hostPEM, k.hostPub = nil, hostPub
	// The directory is 0500 (chowned: the gates run as root, which writes
	// anyway) or 0755 owned by the gates' user.
	authFile := "k-" + randomID(12) + ".keys"
	if err := d.writeFile(authFile, k.authLines, 0o444); err != nil {
		return nil, fmt.Errorf("container %s: %w", short(c.ID), err)
	}
	target := c.Target
	if target == "" {
		target = s.Target
	}
	return &box{id: c.ID, name: c.Name, dirID: d.id, target: target, keys: k, dir: d, user: c.RunAs, env: s.Env,
		keeper: true, started: c.Created, authFile: authFile}, nil
}

// claim asks the registry for the per-user container of s and user.
// owned: this gate owns it now (adopted, or its own from an earlier life).
func (b *Backend) claim(ctx context.Context, s *Spec, user string) (bx *box, owned bool, err error) {
	c, found, adopted, err := b.cfg.Registry.ClaimContainer(ctx, s.Key, user, b.cfg.GateID, b.alive())
	if err != nil || !found {
		return nil, false, err
	}
	owned = c.Gate == b.cfg.GateID
	if strings.HasPrefix(c.ID, pendingPrefix) {
		if owned {
			// Its gate died while starting it (or this gate, in an
			// earlier life): nothing runs; forget it and start one.
			_ = b.cfg.Registry.RemoveContainer(ctx, c.ID)
			return nil, false, nil
		}
		return nil, false, errPending
	}
	bx, err = b.fromRegistry(c, s)
	if err != nil {
		if owned {
			// Ours and unusable: forget the row so that a new one is made.
			_ = b.cfg.Registry.RemoveContainer(ctx, c.ID)
		}
		return nil, false, err
	}
	if !owned {
		// Mark it used before connecting: its owner then keeps it.
		if err := b.cfg.Registry.TouchContainers(ctx, []string{c.ID}, b.cfg.Now()); err != nil {
			b.log.Warn("touch container in the registry", "container", c.Name, "err", err)
		}
	}
	b.log.Info("per-user container found in the registry", "container", c.Name, "id", short(c.ID), "owner", c.Gate, "adopted", adopted)
	return bx, owned, nil
}

// dropForeign forgets a box of another gate's container: only this gate's
// key file goes; the container and its directory stay.
func (b *Backend) dropForeign(bx *box) {
	if bx == nil || bx.authFile == "" || bx.dir == nil {
		return
	}
	os.Remove(filepath.Join(bx.dir.path, bx.authFile))
}

// touch writes the last use of the per-user containers this gate serves
// (now) and of those whose last connection here ended since the last call
// (the latest of those ends): at most two statements per call.
func (b *Backend) touch(now time.Time) {
	b.mu.Lock()
	var inUse, ended []string
	var endedAt time.Time
	for _, e := range b.warm {
		switch {
		case e.bx == nil:
		case e.conns > 0:
			inUse = append(inUse, e.bx.id)
		case e.dirty:
			ended = append(ended, e.bx.id)
			endedAt = later(endedAt, e.lastUsed)
		default:
			continue
		}
		e.dirty = false
	}
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.bg, registryTimeout)
	defer cancel()
	for _, t := range []struct {
		ids []string
		at  time.Time
	}{{inUse, now}, {ended, endedAt}} {
		if len(t.ids) == 0 {
			continue
		}
		if err := b.cfg.Registry.TouchContainers(ctx, t.ids, t.at); err != nil {
			b.log.Debug("touch containers in the registry", "n", len(t.ids), "err", err) // a store outage: logged where logins fail
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// sweep removes the registry's containers that no live gate serves: a dead
// gate's per-connection and pool containers, and per-user ones (a dead
// gate's, handed over, or this gate's own from an earlier life) idle past
// their TTL. Each removal is claimed first, so one gate removes each.
func (b *Backend) sweep(now time.Time) {
	ctx, cancel := context.WithTimeout(b.bg, registryTimeout)
	defer cancel()
	rows, err := b.cfg.Registry.ListContainers(ctx)
	if err != nil || len(rows) == 0 {
		if err != nil {
			b.log.Debug("list containers in the registry", "err", err)
		}
		return
	}
	gates, err := b.cfg.Registry.ListGates(ctx)
	if err != nil {
		b.log.Debug("list gates", "err", err)
		return
	}
	alive := b.alive()
	live := map[string]bool{}
	for _, g := range gates {
		if !g.Heartbeat.Before(alive) {
			live[g.ID] = true
		}
	}
	b.mu.Lock()
	local := map[string]bool{}
	for id := range b.boxes {
		local[id] = true
	}
	for _, e := range b.warm {
		if e.bx != nil {
			local[e.bx.id] = true
		}
	}
	b.mu.Unlock()
	for _, r := range rows {
		if local[r.ID] || (r.Gate != "" && r.Gate != b.cfg.GateID && live[r.Gate]) {
			continue
		}
		if r.Gate == b.cfg.GateID && strings.HasPrefix(r.ID, pendingPrefix) && r.Created.After(now.Add(-b.cfg.OpenTimeout)) {
			continue // this gate is starting it now
		}
		idleBefore := now.Add(-r.IdleTTL)
		if r.Kind != gate.ContainerConn && r.LastUsed.After(idleBefore) {
			continue
		}
		ok, err := b.cfg.Registry.ClaimRemoval(ctx, r.ID, b.cfg.GateID, alive, idleBefore)
		if err != nil || !ok {
			continue
		}
		b.removeListed(ctx, r)
	}
}

// removeListed removes a container of the registry after its row was
// claimed: only a container the engine lists with the gate's labels, and
// from its directory only the files a gate puts there.
func (b *Backend) removeListed(ctx context.Context, r gate.WarmContainer) {
	list, err := b.eng.List(ctx, map[string]string{LabelTarget: r.Target})
	if err != nil {
		b.log.Warn("list containers", "err", err)
		return
	}
	for _, c := range list {
		if c.ID != r.ID || c.Labels[LabelGate] == "" {
			continue
		}
		rctx, cancel := context.WithTimeout(context.Background(), b.cfg.RemoveTimeout)
		err := b.eng.Remove(rctx, Ref{ID: c.ID, Name: firstName(c.Names), Target: r.Target})
		cancel()
		if err != nil {
			b.log.Error("remove container of the registry", "container", r.Name, "err", err)
			return
		}
		why := "idle past its TTL"
		if r.Gate != "" && r.Gate != b.cfg.GateID {
			why = "its gate is gone"
		}
		b.log.Info("removed registry container", "container", r.Name, "id", short(r.ID), "owner", r.Gate, "kind", r.Kind, "why", why)
		break
	}
	if r.Dir != "" && filepath.IsAbs(r.Dir) && filepath.Clean(r.Dir) == r.Dir && dirName.MatchString(filepath.Base(r.Dir)) {
		d := &gateDir{path: r.Dir, shared: true}
		if err := d.remove(); err != nil && !errors.Is(err, os.ErrNotExist) {
			b.log.Warn("remove directory of registry container", "container", r.Name, "err", err)
		}
	}
}

// handOver is Close's with a registry: when another live gate shares it,
// this gate's idle per-user containers stay (their rows become free, for
// the others to adopt or reap after their TTL). It returns the boxes to
// keep rather than remove.
func (b *Backend) handOver(ctx context.Context, owned []*box) map[*box]bool {
	if !b.shares() || len(owned) == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, registryTimeout)
	defer cancel()
	gates, err := b.cfg.Registry.ListGates(rctx)
	if err != nil {
		b.log.Warn("hand over containers: list gates", "err", err)
		return nil
	}
	alive, others := b.alive(), 0
	for _, g := range gates {
		if g.ID != b.cfg.GateID && !g.Heartbeat.Before(alive) {
			others++
		}
	}
	if others == 0 {
		return nil // the last gate: remove them, as a single gate does
	}
	keep := map[*box]bool{}
	b.mu.Lock()
	for _, bx := range owned {
		if bx.recorded {
			keep[bx] = true
		}
	}
	b.mu.Unlock()
	if len(keep) == 0 {
		return nil
	}
	n, err := b.cfg.Registry.ReleaseContainers(rctx, b.cfg.GateID)
	if err != nil {
		b.log.Warn("hand over containers", "err", err)
		return nil
	}
	b.log.Info("per-user containers handed over to the other gates", "containers", n, "gates", others)
	return keep
}
