package broker

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/route"
	"github.com/sshgate/sshgate/internal/sshd"
)

// Jump routing: `ssh -J USER@GATE LOGIN@TARGET` asks a connection without a
// target for a direct-tcpip channel to TARGET (a target name or alias). The
// gate ends that inner SSH connection itself: it presents its host keys
// certified for the name (JumpHosts), takes the inner login as the outer
// connection's proven user (the inner "none" authentication: the user
// proved who they are on the outer connection, which carries this one), and
// serves it exactly as USER+TARGET+LOGIN: the same decision, audit,
// recordings and controls. A host that is not a target the user may reach
// is refused as port forwarding is.

// JumpHosts gives the host keys the gate presents as a target (ca.JumpHosts).
type JumpHosts interface {
	Signers(target string) ([]ssh.Signer, error)
	KnownHosts(names []string) []string // what users add to known_hosts
}

// Jump configures jump routing; a nil Hosts turns it off.
type Jump struct {
	Hosts         JumpHosts
	Config        ssh.Config // algorithms of the inner connection (the gate's own offer)
	ServerVersion string
}

// jumpSeq numbers the inner connections of a gate process, for their ids.
var jumpSeq atomic.Uint64

// jumpTarget reports whether a direct-tcpip channel on a connection without
// a target asks for a jump, and to which name.
func (c *conn) jumpTarget(nc ssh.NewChannel) (string, bool) {
	if c.b.Jump.Hosts == nil || !c.dec.Gate {
		return "", false
	}
	var d struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if ssh.Unmarshal(nc.ExtraData(), &d) != nil || !route.ValidName(d.Host) || d.Host == route.GateTarget {
		return "", false
	}
	return d.Host, true
}

// jump serves one ssh -J inner connection to target name.
func (c *conn) jump(nc ssh.NewChannel, name string) {
	check := c.decide(gate.Route{User: c.id.User, Target: name, Raw: name}, false, false)
	if check.Err == nil && !check.Gate && !c.names(name, check.Permit.Target.Name) {
		// The decision went elsewhere (a config webhook naming the target):
		// the gate presents itself only as the target the client asked for.
		c.log.Info("jump refused: the decision names another target", "asked", name, "decided", check.Permit.Target.Name)
		check.Err = policy.NotPermitted(name)
	}
	if check.Err != nil || check.Gate {
		msg := errNeedsTarget.Public
		if check.Err != nil {
			msg = check.Err.UserMessage()
		}
		c.log.Info("jump refused", "target", name)
		_ = nc.Reject(ssh.Prohibited, msg)
		return
	}
	if !c.reserveJump() {
		_ = nc.Reject(ssh.ResourceShortage, "too many sessions on this connection")
		return
	}
	defer c.unreserve(true)
	keys, err := c.b.Jump.Hosts.Signers(name)
	if err != nil {
		pe := gate.Errorf(err, "the gate cannot present target %s now", name)
		c.log.Error("jump host key", "target", name, "ref", pe.Ref, "err", err)
		_ = nc.Reject(ssh.ConnectionFailed, pe.UserMessage())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	nconn := &channelConn{Channel: ch, local: c.sc.LocalAddr(), remote: c.sc.RemoteAddr()}
	defer nconn.Close()

	var login atomic.Value // the inner username, as the none method saw it
	cfg := &ssh.ServerConfig{
		Config:        c.b.Jump.Config,
		ServerVersion: c.b.Jump.ServerVersion,
		NoClientAuth:  true,
		NoClientAuthCallback: func(m ssh.ConnMetadata) (*ssh.Permissions, error) {
			login.Store(m.User())
			return nil, nil
		},
		MaxAuthTries: 3,
	}
	if cfg.ServerVersion == "" {
		cfg.ServerVersion = string(c.sc.ServerVersion())
	}
	for _, k := range keys {
		cfg.AddHostKey(k)
	}
	grace := c.b.Config.Limits.LoginGrace.D()
	if grace <= 0 {
		grace = time.Minute
	}
	timer := time.AfterFunc(grace, func() { _ = nconn.Close() })
	stop := context.AfterFunc(c.ctx, func() { _ = nconn.Close() })
	defer stop()
	inner, chans, greqs, err := ssh.NewServerConn(nconn, cfg)
	timer.Stop()
	if err != nil {
		c.log.Info("jump handshake failed", "target", name, "err", err)
		return
	}
	sess := *c.sess
	sess.ConnID = c.sc.ID + "-j" + strconv.FormatUint(jumpSeq.Add(1), 10)
	sess.JumpVia = c.sc.ID
	sess.Username, _ = login.Load().(string)
	sess.Route, sess.BadTarget = jumpRoute(c.id.User, name, sess.Username)
	log := c.log.With("inner_conn_id", sess.ConnID, "jump", name)
	log.Info("jump connected", "target", name, "route", sess.Route.String())
	c.b.Handle(c.ctx, &sshd.Conn{ServerConn: inner, ID: sess.ConnID, Session: &sess, Chans: chans, Reqs: greqs, Log: log})
}

// names reports whether name (as a client typed it) is target's name or one
// of its aliases: the only names the gate signs a host certificate for.
func (c *conn) names(name, target string) bool {
	if name == target {
		return true
	}
	snap, err := c.b.Snapshot(c.ctx, c.id.User)
	return err == nil && policy.ResolveName(snap.Infos, name, 0) == target
}

// reserveJump counts an inner connection as a session of the outer one
// (limits.max_sessions bounds both); the channel itself is already counted.
func (c *conn) reserveJump() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions >= c.b.Config.Limits.MaxSessions {
		return false
	}
	c.sessions++
	c.channels++ // unreserve(true) takes both back
	return true
}

// jumpRoute maps the inner login of ssh -J USER@GATE LOGIN@NAME to the route
// USER+NAME+LOGIN. An inner login equal to the gate user (what ssh sends
// when the user's local name is their gate name and none was typed) means
// the target's default login; one that is not a valid login is refused as
// an unknown target.
func jumpRoute(user, name, innerUser string) (gate.Route, bool) {
	r := gate.Route{User: user, Target: name, Raw: name}
	switch {
	case innerUser == "" || innerUser == user:
	case route.ValidLogin(innerUser):
		r.Login = innerUser
		r.Raw = name + route.Separator + innerUser
	default:
		r.Raw = name + route.Separator + route.Printable(innerUser)
		return r, true
	}
	return r, false
}

// channelConn is an SSH channel as the net.Conn the inner SSH server reads.
// Deadlines are not supported: the inner handshake is bounded by a timer
// and the outer connection's life.
type channelConn struct {
	ssh.Channel
	local, remote net.Addr
}

func (c *channelConn) LocalAddr() net.Addr  { return c.local }
func (c *channelConn) RemoteAddr() net.Addr { return c.remote }
func (c *channelConn) SetDeadline(time.Time) error {
	return nil
}
func (c *channelConn) SetReadDeadline(time.Time) error  { return nil }
func (c *channelConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*channelConn)(nil)
