// Package broker serves one authenticated connection: it takes the typed
// session auth proved, computes the connection's one access decision
// (policy.Decide over one snapshot of the store and the config webhook's
// answer), opens the target through its backend and relays every channel;
// connections without a target go to the account side.
//
// Must not import: auth app cli sshd/penalty store/sqlite target/docker target/upstream target/container
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

	"github.com/sshgate/sshgate/internal/account"
	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/coalesce"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/fdpass"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/relay"
	"github.com/sshgate/sshgate/internal/sshd"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/target"
)

// Store is the part of the store the broker and the account side read
// and write.
type Store interface {
	ListTargets(ctx context.Context) ([]gate.Target, error)
	ListGrants(ctx context.Context, user string) ([]gate.Grant, error)
	ListTargetInfo(ctx context.Context) ([]gate.TargetInfo, error)
	GetUserInfo(ctx context.Context, user string) (gate.UserInfo, error)
	account.Store // the account side's keys and groups
}

// SecondFactor is the TOTP second factor as the broker uses it: a target's
// effective mode (checked for every target opened) and self-service
// enrolment (`ssh -t USER@GATE totp enroll`).
type SecondFactor interface {
	TargetMode(ctx context.Context, t gate.Target) string
	Enrolled(ctx context.Context, user string) (bool, error)
	// Enrol activates secret for user if code is valid for it; ok is false
	// for a wrong code.
	Enrol(ctx context.Context, user, secret, code string) (ok bool, err error)
}

// Deps is everything a broker needs; New takes them whole.
type Deps struct {
	Config   config.Config
	Store    Store
	Backends map[string]target.Backend // by target kind (gate.KindUpstream, gate.KindDocker)
	Log      *slog.Logger

	TOTP      SecondFactor // nil: the second factor is off
	Hook      *ConfigHook  // the config webhook; nil: none
	Observers Observers    // metrics, recordings, live sessions; every field optional
	Audit     Auditor      // nil: no audit events
	// AuditFailClosed says which targets must not be used while the audit
	// record cannot be kept; nil: none.
	AuditFailClosed func(target string) bool
	// SignClient signs `cert` certificates from the client CA (nil: off);
	// CertTTL is their longest lifetime.
	SignClient account.CertSigner
	CertTTL    time.Duration
	// Jump turns on ssh -J through the gate (jump.go); zero: off.
	Jump Jump
	// LiveSessions tells a watcher which other gate holds a session (nil: not told).
	LiveSessions LiveSessions
}

// Broker serves authenticated connections.
type Broker struct {
	Deps
	drain drainer // PTY sessions to tell when the gate drains (drain.go)
}

// New returns a broker ready to serve.
func New(d Deps) (*Broker, error) {
	if d.Store == nil || d.Log == nil || len(d.Backends) == 0 {
		return nil, errors.New("broker: store, log and backends are required")
	}
	if d.AuditFailClosed == nil {
		d.AuditFailClosed = func(string) bool { return false }
	}
	if d.Config.Limits.MaxChannels <= 0 {
		d.Config.Limits.MaxChannels = defaultMaxChannels
	}
	return &Broker{Deps: d}, nil
}

// conn is one authenticated client connection, from the handshake to the
// last channel. Its life:
//
//   - Handle creates it after sshd has authenticated the user; sess (what
//     auth proved, typed) and dec (the one access decision, computed by
//     decide from one snapshot of the store and the config webhook's
//     answer) are set before the first channel or request is read, and are
//     never written again: every channel and global request reads them.
//   - Handle's goroutine reads the user's channels and global requests; each
//     channel runs in its own goroutine (counted in wg, bounded by reserve);
//     each remote-forward request too. A relayed session, once started, is
//     handed to Handle's loop (adopt, one at a time), which serves its
//     requests and the end of its output; the session's goroutine returns,
//     and its end runs in a goroutine of its own when the relay is done (an
//     idle session then costs only its readers). Others, and any still
//     running when the user's loop ends, keep a goroutine of their own.
//   - The target connection is dialled once, by whichever channel or request
//     first needs it (upOnce); Handle's loop serves what the target opens
//     toward the user (fromTarget) until the target connection ends or the
//     user's does, after which a goroutine of its own does (fromUpstream).
//     The account menu dials a connection per choice (ups holds them all);
//     all but the first get that goroutine from the start.
//   - When the user's connection ends, Handle cancels ctx, closes every
//     target connection (a hung target would never answer a channel close),
//     waits for wg, then releases the targets (stops containers).
//
// Lock order: conn.mu is a leaf; no lock is held across I/O.
type conn struct {
	b    *Broker
	sc   *sshd.Conn
	sess *gate.Session
	id   *gate.Identity // &sess.Identity
	dec  policy.Decision
	hook *policy.Hook // the config webhook's answer (nil: none configured)
	log  *slog.Logger
	ctx  context.Context

	upOnce sync.Once
	up     *upConn
	upErr  error

	// upLoop hands the first target connection to Handle's loop, which
	// serves what the target opens toward the user (fromUpstream's work)
	// with the user's channels; nil once that loop has ended or has one.
	// Others get a goroutine of their own. Under mu.
	upLoop chan upStreams
	// adopt hands a running session's relay to Handle's loop, which serves
	// its requests with the connection's (one at a time); nil when the loop
	// has ended or serves one. Under mu.
	adopt chan *adopted

	mu       sync.Mutex
	ups      []*upConn // every target connection opened, for closing at the end
	sessions int       // session channels open now (limits.max_sessions)
	channels int       // all channels open now (maxChannels)
	refused  int       // forward opens that carried nothing (auditedRefusals)
	wg       sync.WaitGroup
}

// defaultMaxChannels is limits.max_channels when a Config leaves it zero:
// channels of every kind open at once on one connection (the user's and the
// ones the target opens toward the user: remote forwards); sessions have
// their own, smaller limit, limits.max_sessions, as in OpenSSH's MaxSessions.
const defaultMaxChannels = 1000

// Other per-connection caps, fixed: a channel open, a rejected one included,
// costs the gate a goroutine for the time it takes to answer, so these bound
// what a connection holds, not what it may try.
const (
	// maxEnv bounds the env requests kept for replay before a session
	// starts (OpenSSH's sshd keeps 128 too); later ones are refused.
	maxEnv = 128
	// globalQueue bounds the user's global requests waiting for the target
	// (remote forwarding): they are answered one at a time, in order, as
	// RFC 4254 says replies must come; past it the connection's reads wait.
	globalQueue = 16
	// auditedRefusals bounds the forward events of opens that carried
	// nothing (denied by the gate, or failed at the target) written one by
	// one per connection; past it they are counted, and one forward event
	// with result "suppressed" and their count is written when the
	// connection ends, so a client opening refused forwards in a loop cannot
	// fill the audit log.
	auditedRefusals = 100
)

func (c *conn) reserve(session bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.channels >= c.b.Config.Limits.MaxChannels || session && c.sessions >= c.b.Config.Limits.MaxSessions {
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

// adopted is a running session relay handed to Handle's loop: its request
// loop runs there; finish (Finish, the session's end and its cleanups) then
// runs in a goroutine of its own.
type adopted struct {
	run    *relay.Run
	finish func()
}

// loop serves the session in the calling goroutine to its end.
func (a *adopted) loop() {
	a.run.Loop()
	a.finish()
}

// adopted checks the session Handle's loop serves after a step: once its
// relay is done, its end runs in a goroutine of its own and the loop takes
// the next session handed to it (the returned channel).
func (c *conn) adopted(a *adopted) (*adopted, chan *adopted) {
	if !a.run.Done() {
		return a, nil
	}
	go a.finish()
	next := make(chan *adopted, 1)
	c.mu.Lock()
	c.adopt = next
	c.mu.Unlock()
	return nil, next
}

// handOver gives a session's relay to Handle's loop if it serves none; false:
// the caller serves it.
func (c *conn) handOver(a *adopted) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.adopt == nil {
		return false
	}
	c.adopt <- a // buffered, and sent to once
	c.adopt = nil
	return true
}

// upStreams are what a target connection sends on its own initiative.
type upStreams struct {
	up    *upConn
	chans <-chan ssh.NewChannel
	reqs  <-chan *ssh.Request
}

// upConn is a logged-in connection to a target.
type upConn struct {
	client  ssh.Conn
	fds     *fdpass.Sender // the connection passes descriptors (stdinpipe.go); nil: it cannot
	permit  policy.Permit
	release func(context.Context) error
	ended   func(context.Context) string // why the target went away, if the backend knows
	done    chan struct{}                // closed when the target connection ends
	wg      sync.WaitGroup               // channels the target opened toward the user
	once    sync.Once

	// Agent forwarding (agentfwd.go), under conn.mu: the sessions on this
	// connection whose agent request the target accepted, still running,
	// and the agent channels relayed now.
	agentSessions int
	agentChannels int
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
	if sc.Session == nil {
		sc.Log.Error("no session on an authenticated connection")
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &conn{b: b, sc: sc, sess: sc.Session, id: &sc.Session.Identity, log: sc.Log, ctx: ctx}
	defer c.auditConn()()
	stop := context.AfterFunc(ctx, func() { _ = sc.Close() })
	defer stop()
	c.hook = c.askHook()
	c.dec = c.decide(c.sess.Route, c.sess.BadTarget, true)
	// One loop for the user's channels and global requests (both streams
	// close when the connection ends) and, once dialled, for what the
	// target opens toward the user.
	chans, reqs := sc.Chans, sc.Reqs
	upLoop := make(chan upStreams, 1)
	c.mu.Lock()
	c.upLoop = upLoop
	c.mu.Unlock()
	var us upStreams // the target connection this loop serves, once dialled
	adopt := make(chan *adopted, 1)
	c.mu.Lock()
	c.adopt = adopt
	c.mu.Unlock()
	var ad *adopted // the session this loop serves, if any
	var gq globalQueueRun
	for chans != nil || reqs != nil {
		var adDown, adUp <-chan *ssh.Request
		var adOut <-chan struct{}
		if ad != nil {
			adDown, adUp, adOut = ad.run.Pending()
		}
		select {
		case ad = <-adopt:
			adopt = nil
		case req, ok := <-adDown:
			ad.run.DownRequest(req, ok)
			ad, adopt = c.adopted(ad)
		case req, ok := <-adUp:
			ad.run.UpRequest(req, ok)
			ad, adopt = c.adopted(ad)
		case <-adOut:
			ad.run.OutputEnded()
			ad, adopt = c.adopted(ad)
		case us = <-upLoop:
			upLoop = nil
		case r, ok := <-us.reqs:
			us.request(r, ok)
		case nc, ok := <-us.chans:
			us.channel(c, nc, ok)
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			if !gq.push(c, r) { // a client that does not wait for its replies
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
			}
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
				end := func() {
					c.unreserve(isSession)
					c.wg.Done()
				}
				handed := false
				defer func() {
					if !handed {
						end()
					}
				}()
				switch nc.ChannelType() {
				case "session":
					handed = c.session(nc, end)
				case "direct-tcpip":
					c.directTCPIP(nc)
				case streamLocal:
					c.directStreamLocal(nc)
				default:
					_ = nc.Reject(ssh.UnknownChannelType, "channel type not supported")
				}
			}()
		}
	}
	// The user is gone. What the target still opens is refused from now on,
	// by a goroutine of its own, until the target connection ends; a dial
	// finishing from now on serves its own.
	c.mu.Lock()
	c.upLoop = nil
	c.mu.Unlock()
	if upLoop != nil {
		select {
		case us = <-upLoop:
		default:
		}
	}
	if us.up != nil && (us.chans != nil || us.reqs != nil) {
		go c.fromUpstream(us)
	}
	// A session this loop served goes on in a goroutine of its own.
	c.mu.Lock()
	c.adopt = nil
	c.mu.Unlock()
	if adopt != nil {
		select {
		case ad = <-adopt:
		default:
		}
	}
	if ad != nil {
		go ad.loop()
	}
	// Close the target connections before waiting for the
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
	suppressed := c.refused - auditedRefusals
	c.mu.Unlock()
	if suppressed > 0 {
		c.auditSuppressedForwards(int64(suppressed))
	}
	for _, u := range ups {
		u.close()
	}
}

// upstream returns the connection's shared target connection, dialling it once.
func (c *conn) upstream() (*upConn, error) {
	c.upOnce.Do(func() {
		switch {
		case c.dec.Err != nil:
			c.upErr = c.dec.Err
		case c.dec.Gate:
			c.upErr = errNeedsTarget
		default:
			c.up, c.upErr = c.dial(c.dec.Permit)
		}
	})
	return c.up, c.upErr
}

// dial opens the target through its backend and logs in.
func (c *conn) dial(p policy.Permit) (_ *upConn, err error) {
	defer func(start time.Time) { c.b.targetOpened(p.Target.Kind, start, err) }(time.Now())
	name := p.Target.Name
	be := c.b.Backends[p.Target.Kind]
	if be == nil {
		return nil, gate.Errorf(fmt.Errorf("no backend for kind %q", p.Target.Kind), "target %q is not available on this gate", name)
	}
	c.auditTarget(p)
	timeout := c.b.Config.Limits.UpstreamTimeout.D()
	ctx, cancel := context.WithTimeout(c.ctx, timeout+60*time.Second) // container starts may take longer than a dial
	defer cancel()
	start := time.Now()
	u, err := be.Open(ctx, target.Request{Target: p.Target, Login: p.Login, ID: c.id, ConnID: c.sc.ID,
		Forwarding: p.Forwarding, AgentForwarding: p.Controls.AgentForwarding})
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
	fds, _ := u.Conn.(*fdpass.Sender)
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
		case p.Target.Upstream != nil && p.Target.Upstream.HostKey == "" && strings.Contains(err.Error(), "no common algorithm for host key"):
			// A host-CA target offers only host certificates: one that has
			// none fails the negotiation, which is the host key's fault,
			// not the network's.
			pe := gate.Errorf(err, "target %q presented an unexpected host key; refusing to connect", name)
			c.log.Error("target host certificate refused", "target", name, "ref", pe.Ref, "reason", "the target presents no host certificate")
			return nil, pe
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, gate.Errorf(err, "target %q refused the gate's login as %q", name, p.Login)
		default:
			return nil, gate.Errorf(err, "target %q is unreachable", name)
		}
	}
	_ = u.Conn.SetDeadline(time.Time{})
	c.log.Info("target connected", "target", name, "login", p.Login, "kind", p.Target.Kind, "took", time.Since(start).Round(time.Millisecond))
	up := &upConn{client: client, fds: fds, permit: p, done: make(chan struct{}), release: u.Release, ended: u.Ended}
	c.mu.Lock()
	c.ups = append(c.ups, up)
	us := upStreams{up: up, chans: chans, reqs: reqs}
	if c.upLoop != nil {
		c.upLoop <- us // buffered, and sent to once
		c.upLoop = nil
	} else {
		go c.fromUpstream(us)
	}
	c.mu.Unlock()
	return up, nil
}

// fromUpstream serves what the target sends on its own initiative until the
// target connection ends: global requests (hostkeys-00 and the like stay at
// the gate, answered no) and channels (fromTarget). Handle's loop does the
// same for the connection's first target connection.
func (c *conn) fromUpstream(us upStreams) {
	for us.chans != nil || us.reqs != nil {
		select {
		case r, ok := <-us.reqs:
			us.request(r, ok)
		case nc, ok := <-us.chans:
			us.channel(c, nc, ok)
		}
	}
}

// ended marks the target connection done once both of its streams have
// closed.
// request answers one of the target's global requests (no: hostkeys-00
// and the like stay at the gate); ok false: they ended.
func (us *upStreams) request(r *ssh.Request, ok bool) {
	if !ok {
		us.reqs = nil
		us.ended()
	} else if r.WantReply {
		_ = r.Reply(false, nil)
	}
}

// channel serves a channel the target opens (fromTarget); ok false: the
// target's channel opens ended.
func (us *upStreams) channel(c *conn, nc ssh.NewChannel, ok bool) {
	if !ok {
		us.chans = nil
		us.ended()
		return
	}
	c.fromTarget(us.up, nc)
}

func (us *upStreams) ended() {
	if us.chans == nil && us.reqs == nil {
		close(us.up.done)
	}
}

// fromTarget answers a channel the target opens: only forwarded-tcpip
// (remote forwarding) goes back to the user, and only when the grant allows
// forwarding, and auth-agent@openssh.com, under the rules of agentfwd.go.
// It does not block: an accepted channel runs in a goroutine of its own.
func (c *conn) fromTarget(up *upConn, nc ssh.NewChannel) {
	if nc.ChannelType() == agentChannel {
		up.wg.Add(1)
		go func() {
			defer up.wg.Done()
			c.agentChannel(up, nc)
		}()
		return
	}
	if nc.ChannelType() != "forwarded-tcpip" || !up.permit.Forwarding {
		_ = nc.Reject(ssh.Prohibited, "not permitted")
		return
	}
	if !c.reserve(false) {
		_ = nc.Reject(ssh.ResourceShortage, "too many channels on this connection")
		return
	}
	up.wg.Add(1)
	go func() {
		defer func() {
			c.unreserve(false)
			up.wg.Done()
		}()
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
		c.auditForward(nc.ChannelType(), forwardDest(nc.ChannelType(), nc.ExtraData()), up.permit, func(cnt *relay.Counters) {
			c.relayChannel(upCh, upReqs, downCh, downReqs, false, cnt)
		})
	}()
}

// globalQueueRun holds the user's global requests waiting for an answer
// (at most globalQueue). A goroutine answers them, in order, only while
// some are queued: an idle connection holds none.
type globalQueueRun struct {
	mu      sync.Mutex
	queue   []*ssh.Request
	running bool
}

// push queues r, starting the answering goroutine if none runs; false if
// the queue is full.
func (q *globalQueueRun) push(c *conn, r *ssh.Request) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.queue) >= globalQueue {
		return false
	}
	q.queue = append(q.queue, r)
	if !q.running {
		q.running = true
		c.wg.Add(1)
		go q.run(c)
	}
	return true
}

func (q *globalQueueRun) run(c *conn) {
	defer c.wg.Done()
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.running = false
			q.queue = nil
			q.mu.Unlock()
			return
		}
		r := q.queue[0]
		q.queue = q.queue[1:]
		q.mu.Unlock()
		c.globalRequest(r)
	}
}

// globalRequest answers one of the user's global requests, in the order
// they came (the connection's one goroutine for them; RFC 4254 wants the
// replies in order): remote forwarding goes to the target when the grant
// allows it (which may dial the target); everything else is answered no.
func (c *conn) globalRequest(r *ssh.Request) {
	switch r.Type {
	case "tcpip-forward", "cancel-tcpip-forward":
		ok, payload := false, []byte(nil)
		// An address and a port: a longer payload is no request of a client.
		if len(r.Payload) <= 1024 {
			if up, err := c.upstream(); err == nil && up.permit.Forwarding {
				ok, payload, _ = up.client.SendRequest(r.Type, true, r.Payload)
			}
		}
		if r.WantReply {
			_ = r.Reply(ok, payload)
		}
		c.auditRemoteForward(r.Type, r.Payload, ok)
	default:
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
}

// errNeedsTarget answers a forward on a connection without a target.
var errNeedsTarget = &gate.PublicError{Public: "port forwarding needs a target: connect as USER+TARGET"}

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
