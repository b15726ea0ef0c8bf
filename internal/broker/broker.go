// Package broker serves one authenticated connection: it routes the SSH
// username (or the menu choice) to a target, authorizes it against the
// user's grants, opens the target through its backend and relays every
// channel. It is the only place where auth, policy, target and relay meet.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth"
	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/relay"
	"github.com/sshgate/sshgate/internal/route"
	"github.com/sshgate/sshgate/internal/sshd"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/target"
	"github.com/sshgate/sshgate/internal/coalesce"
)

// Store is the part of the store the broker reads.
type Store interface {
	ListTargets(ctx context.Context) ([]gate.Target, error)
	ListGrants(ctx context.Context, user string) ([]gate.Grant, error)
}

// Broker serves authenticated connections.
type Broker struct {
	totp     TOTPEnroller // self-service TOTP enrolment (totp.go); nil: off
	modes    TOTPModes    // targets' TOTP modes (totp.go); nil: no second factor
	store    Store
	backends map[string]target.Backend
	cfg      config.Config
	log      *slog.Logger
	hook     *configHook // the config webhook, if any (webhook.go)
	obs      Observers   // metrics, recordings, live sessions (obs.go)
	aud      auditing    // SetAudit (audit.go)
}

// New returns a broker. backends maps a target kind (gate.KindUpstream,
// gate.KindDocker) to its backend.
func New(cfg config.Config, st Store, backends map[string]target.Backend, log *slog.Logger) *Broker {
	return &Broker{store: st, backends: backends, cfg: cfg, log: log}
}

// conn is the state of one client connection.
type conn struct {
	b     *Broker
	sc    *sshd.Conn
	id    *gate.Identity
	route route.Route
	rerr  error
	log   *slog.Logger
	ctx   context.Context

	resOnce sync.Once // resolve.go
	res     resolution

	accessOnce sync.Once
	access     []policy.Access
	accessErr  error

	hook hookState // the config webhook's answer (webhook.go)

	upOnce sync.Once
	up     *upConn
	upErr  error

	mu       sync.Mutex
	ups      []*upConn // every target connection opened, for closing at the end
	sessions int       // session channels open now (limits.max_sessions)
	channels int       // all channels open now (maxChannels)
	wg       sync.WaitGroup
}

// maxChannels bounds forwarded and other channels on one connection; sessions
// have their own, smaller limit, as in OpenSSH's MaxSessions.
const maxChannels = 1000

func (c *conn) reserve(session bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.channels >= maxChannels || session && c.sessions >= c.b.cfg.Limits.MaxSessions {
		return false
	}
	c.channels++
	if session {
		c.sessions++
	}
	return true
}

func (c *conn) unreserve(session bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.channels--
	if session {
		c.sessions--
	}
}

// upConn is a logged-in connection to a target.
type upConn struct {
	client  ssh.Conn
	permit  policy.Permit
	release func(context.Context) error
	ended   func(context.Context) string // why the target went away, if the backend knows
	done    chan struct{}                // closed when the target connection ends
	wg      sync.WaitGroup               // channels the target opened toward the user
	once    sync.Once
}

// close ends the target connection, waits for what it carried and releases
// the target (stops a container). Idempotent.
func (u *upConn) close() {
	u.once.Do(func() {
		_ = u.client.Close()
		<-u.done
		u.wg.Wait()
		if u.release != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = u.release(ctx)
		}
	})
}

// Handle serves one authenticated connection until it ends.
func (b *Broker) Handle(ctx context.Context, sc *sshd.Conn) {
	id, err := auth.Identity(sc.ServerConn)
	if err != nil {
		sc.Log.Error("no identity on an authenticated connection", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &conn{b: b, sc: sc, id: id, log: sc.Log, ctx: ctx}
	c.route, c.rerr = route.Parse(sc.User())
	defer c.auditConn()()
	stop := context.AfterFunc(ctx, func() { _ = sc.Close() })
	defer stop()
	// One loop for the user's channels and global requests: both streams
	// close when the connection ends.
	chans, reqs := sc.Chans, sc.Reqs
	for chans != nil || reqs != nil {
		select {
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			c.globalRequest(r)
		case nc, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			isSession := nc.ChannelType() == "session"
			if !c.reserve(isSession) {
				_ = nc.Reject(ssh.ResourceShortage, "too many channels on this connection")
				continue
			}
			c.wg.Add(1)
			go func() {
				defer func() {
					c.unreserve(isSession)
					c.wg.Done()
				}()
				switch nc.ChannelType() {
				case "session":
					c.session(nc)
				case "direct-tcpip":
					c.directTCPIP(nc)
				default:
					_ = nc.Reject(ssh.UnknownChannelType, "channel type not supported")
				}
			}()
		}
	}
	// The user is gone. Close the target connections before waiting for the
	// channels: a target that is alive but hung never answers a channel
	// close, and would hold this connection's goroutines until TCP gives up.
	cancel()
	c.mu.Lock()
	ups := c.ups
	c.mu.Unlock()
	for _, u := range ups {
		_ = u.client.Close()
	}
	c.wg.Wait()
	c.mu.Lock()
	ups = c.ups // a dial may have finished meanwhile
	c.mu.Unlock()
	for _, u := range ups {
		u.close()
	}
}

// accessible is what this user may reach, read once per connection.
func (c *conn) accessible() ([]policy.Access, error) {
	c.accessOnce.Do(func() {
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		defer cancel()
		targets, err := c.b.store.ListTargets(ctx)
		if err != nil {
			c.accessErr = fmt.Errorf("list targets: %w", err)
			return
		}
		grants, err := c.b.store.ListGrants(ctx, c.id.User)
		if err != nil {
			c.accessErr = fmt.Errorf("list grants: %w", err)
			return
		}
		c.access = policy.Accessible(targets, grants)
	})
	return c.access, c.accessErr
}

// errNoTarget is shown, identically, for unknown and ungranted targets.
func errNoTarget(name string) *gate.PublicError {
	return &gate.PublicError{Public: fmt.Sprintf("target %q not found or not permitted", name)}
}

// grantPermit decides the connection's routed target from the user's grants.
func (c *conn) grantPermit() (policy.Permit, error) {
	res := c.resolve()
	if res.err != nil {
		return policy.Permit{}, res.err
	}
	access, err := c.accessible()
	if err != nil {
		return policy.Permit{}, gate.Errorf(err, "the gate cannot read its policy")
	}
	p, ok := policy.Decide(access, res.target, c.route.Login)
	if res.target == "" || !ok {
		if c.route.Raw == "" { // the user's default target
			return policy.Permit{}, errNoTarget(res.target)
		}
		return policy.Permit{}, errNoTarget(c.route.Raw)
	}
	return c.certForwarding(p), nil
}

// upstream returns the connection's shared target connection, dialling it once.
func (c *conn) upstream() (*upConn, error) {
	c.upOnce.Do(func() {
		p, err := c.permit()
		if err != nil {
			c.upErr = err
			return
		}
		c.up, c.upErr = c.dial(p)
	})
	return c.up, c.upErr
}

// dial opens the target through its backend and logs in.
func (c *conn) dial(p policy.Permit) (_ *upConn, err error) {
	if err := c.secondFactorAllows(p); err != nil { // totp.go
		return nil, err
	}
	defer func(start time.Time) { c.b.targetOpened(p.Target.Kind, start, err) }(time.Now())
	p, err = c.override(p)
	if err != nil {
		return nil, err
	}
	p = c.certForwarding(p)
	name := p.Target.Name
	be := c.b.backends[p.Target.Kind]
	if be == nil {
		return nil, gate.Errorf(fmt.Errorf("no backend for kind %q", p.Target.Kind), "target %q is not available on this gate", name)
	}
	c.auditTarget(p)
	timeout := c.b.cfg.Limits.UpstreamTimeout.D()
	ctx, cancel := context.WithTimeout(c.ctx, timeout+60*time.Second) // container starts may take longer than a dial
	defer cancel()
	start := time.Now()
	u, err := be.Open(ctx, target.Request{Target: p.Target, Login: p.Login, ID: c.id, ConnID: c.sc.ID, Forwarding: p.Forwarding})
	if err != nil {
		var pe *gate.PublicError
		if !errors.As(err, &pe) {
			pe = gate.Errorf(err, "target %q is unreachable", name)
		}
		return nil, pe
	}
	release := func() {
		if u.Release != nil {
			rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer rcancel()
			_ = u.Release(rctx)
		}
	}
	u.Conn = coalesce.New(u.Conn)
	_ = u.Conn.SetDeadline(time.Now().Add(timeout))
	addr := u.Conn.RemoteAddr().String()
	client, chans, reqs, err := ssh.NewClientConn(u.Conn, addr, u.Client)
	if err != nil {
		_ = u.Conn.Close()
		release()
		var mm *sshkeys.HostKeyMismatchError
		var hc *ca.HostCertError
		switch {
		case errors.As(err, &hc):
			pe := gate.Errorf(err, "target %q presented an unexpected host key; refusing to connect", name)
			c.log.Error("target host certificate refused", "target", name, "ref", pe.Ref, "principal", hc.Principal, "presented", hc.Presented, "reason", hc.Reason)
			return nil, pe
		case errors.As(err, &mm):
			pe := gate.Errorf(err, "target %q presented an unexpected host key; refusing to connect", name)
			c.log.Error("target host key mismatch", "target", name, "ref", pe.Ref, "pinned", mm.Want, "presented", mm.Got)
			return nil, pe
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, gate.Errorf(err, "target %q refused the gate's login as %q", name, p.Login)
		default:
			return nil, gate.Errorf(err, "target %q is unreachable", name)
		}
	}
	_ = u.Conn.SetDeadline(time.Time{})
	c.log.Info("target connected", "target", name, "login", p.Login, "kind", p.Target.Kind, "took", time.Since(start).Round(time.Millisecond))
	up := &upConn{client: client, permit: p, done: make(chan struct{}), release: u.Release, ended: u.Ended}
	go c.fromUpstream(up, chans, reqs)
	c.mu.Lock()
	c.ups = append(c.ups, up)
	c.mu.Unlock()
	return up, nil
}

// fromUpstream serves what the target sends on its own initiative until the
// target connection ends: global requests (hostkeys-00 and the like stay at
// the gate, answered no) and channels, of which only forwarded-tcpip (remote
// forwarding) goes back to the user, and only when the grant allows
// forwarding.
func (c *conn) fromUpstream(up *upConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	defer close(up.done)
	for chans != nil || reqs != nil {
		select {
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
			} else if r.WantReply {
				_ = r.Reply(false, nil)
			}
		case nc, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			if nc.ChannelType() != "forwarded-tcpip" || !up.permit.Forwarding {
				_ = nc.Reject(ssh.Prohibited, "not permitted")
				continue
			}
			up.wg.Add(1)
			go func() {
				defer up.wg.Done()
				downCh, downReqs, err := c.sc.OpenChannel(nc.ChannelType(), nc.ExtraData())
				if err != nil {
					_ = nc.Reject(ssh.ConnectionFailed, "user refused the channel")
					return
				}
				upCh, upReqs, err := nc.Accept()
				if err != nil {
					_ = downCh.Close()
					return
				}
				c.auditForward(nc.ChannelType(), nc.ExtraData(), up.permit, func(cnt *relay.Counters) {
					c.relayChannel(upCh, upReqs, downCh, downReqs, false, cnt)
				})
			}()
		}
	}
}

// globalRequest answers one of the user's global requests: remote
// forwarding goes to the target when the grant allows it (in its own
// goroutine, as it may dial the target); everything else is answered no.
func (c *conn) globalRequest(r *ssh.Request) {
	switch r.Type {
	case "tcpip-forward", "cancel-tcpip-forward":
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			ok, payload := false, []byte(nil)
			if up, err := c.upstream(); err == nil && up.permit.Forwarding {
				ok, payload, _ = up.client.SendRequest(r.Type, true, r.Payload)
			}
			if r.WantReply {
				_ = r.Reply(ok, payload)
			}
			c.auditRemoteForward(r.Type, r.Payload, ok)
		}()
	default:
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
}

// directTCPIP relays local port forwarding (ssh -L) when the grant allows it.
func (c *conn) directTCPIP(nc ssh.NewChannel) {
	if c.resolve().gate && !c.hookRoutes() {
		_ = nc.Reject(ssh.Prohibited, "port forwarding needs a target: connect as USER+TARGET")
		return
	}
	p, err := c.permit()
	if err != nil {
		_ = nc.Reject(ssh.Prohibited, publicText(err))
		return
	}
	if err := c.auditAdmit(p, "forwarded channel"); err != nil {
		_ = nc.Reject(ssh.Prohibited, publicText(err))
		return
	}
	if !p.Forwarding {
		c.log.Info("port forwarding refused", "target", p.Target.Name)
		_ = nc.Reject(ssh.Prohibited, fmt.Sprintf("port forwarding is not permitted for target %s", p.Target.Name))
		return
	}
	up, err := c.upstream()
	if err != nil {
		c.logPublic(err)
		_ = nc.Reject(ssh.ConnectionFailed, publicText(err))
		return
	}
	upCh, upReqs, err := up.client.OpenChannel("direct-tcpip", nc.ExtraData())
	if err != nil {
		var oe *ssh.OpenChannelError
		if errors.As(err, &oe) {
			_ = nc.Reject(oe.Reason, oe.Message)
		} else {
			_ = nc.Reject(ssh.ConnectionFailed, "the target could not open the connection")
		}
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		_ = upCh.Close()
		return
	}
	c.auditForward("direct-tcpip", nc.ExtraData(), p, func(cnt *relay.Counters) {
		c.relayChannel(ch, reqs, upCh, upReqs, true, cnt)
	})
}

func publicText(err error) string {
	var pe *gate.PublicError
	if errors.As(err, &pe) {
		return pe.UserMessage()
	}
	return "internal error"
}

func (c *conn) logPublic(err error) {
	var pe *gate.PublicError
	if errors.As(err, &pe) && pe.Cause != nil {
		c.log.Warn(pe.Public, "ref", pe.Ref, "err", pe.Cause)
	}
}
