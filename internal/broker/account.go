package broker

import (
	"context"
	"net"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/account"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
)

// account is the connection as the account side (the gate's commands and
// the menu) sees it.
func (c *conn) account() *account.Conn {
	host, port := c.advertise()
	a := &account.Conn{
		Ctx: c.ctx, Log: c.log, Store: c.b.Store, Identity: *c.id,
		Snapshot: func(ctx context.Context) (policy.Snapshot, error) { return c.b.Snapshot(ctx, c.id.User) },
		Open:     c.openChosen,
		Host:     host, Port: port,
		AfterSession: c.b.Config.Menu.AfterSession,
		ProbeTimeout: c.b.Config.Menu.ProbeTimeout.D(),
		SSO:          c.sess.SSO,
		SignClient:   c.b.SignClient,
		CertTTL:      c.b.CertTTL,
		MOTDFile:     c.b.Config.Menu.MOTD,
		Watch:        c.watchSession,
	}
	if c.b.TOTP != nil {
		a.TOTP = c.b.TOTP
	}
	if c.b.Jump.Hosts != nil {
		a.JumpKnownHosts = c.b.Jump.Hosts.KnownHosts
	}
	return a
}

// openChosen decides and dials a target chosen in the menu: the same
// decision as for a username naming it, from a fresh snapshot.
func (c *conn) openChosen(name string, connecting func(target, login string)) (account.Target, error) {
	d := c.decide(gate.Route{Target: name}, false, false)
	if d.Err != nil {
		return nil, d.Err
	}
	if d.Gate {
		return nil, policy.NotPermitted(name)
	}
	connecting(d.Permit.Target.Name, d.Permit.Login)
	up, err := c.dial(d.Permit)
	if err != nil {
		c.logPublic(err)
		return nil, err
	}
	return &chosen{c: c, up: up, p: d.Permit}, nil
}

// chosen is a target opened from the menu.
type chosen struct {
	c  *conn
	up *upConn
	p  policy.Permit
}

func (t *chosen) Shell(ch ssh.Channel, reqs <-chan *ssh.Request, pty account.PtyReq, env [][]byte) {
	t.c.relaySession(ch, reqs, &account.Setup{PTY: &pty, Env: env, Start: &ssh.Request{Type: "shell"}}, t.up, t.p, false, nil) // the menu waits for the session: not handed over
}

func (t *chosen) Close() { t.up.close() }

// advertise is the host and port users reach the gate at.
func (c *conn) advertise() (string, string) {
	if h, p, ok := c.b.Config.AdvertiseHostPort(); ok {
		return h, p
	}
	h, p, err := net.SplitHostPort(c.sc.LocalAddr().String())
	if err != nil {
		return c.sc.LocalAddr().String(), "22"
	}
	return h, p
}
