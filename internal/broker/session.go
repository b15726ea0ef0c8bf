package broker

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/account"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/relay"
)

type envReq struct{ Name, Value string }

// collect reads requests until the one that starts the session (shell,
// exec, subsystem). It returns nil if the channel closed first; agent says
// the session asked for agent forwarding and the decision allows it.
func (c *conn) collect(reqs <-chan *ssh.Request) (s *account.Setup, agent bool) {
	s = &account.Setup{}
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			var p account.PtyReq
			if err := ssh.Unmarshal(req.Payload, &p); err != nil || len(p.Term) > 256 || len(p.Modes) > 1024 || !c.dec.PTY {
				_ = req.Reply(false, nil)
				continue
			}
			s.PTY = &p
			_ = req.Reply(true, nil)
		case "window-change":
			resize(s, req.Payload)
		case "env":
			ok := len(s.Env) < maxEnv && c.envAllowed(req.Payload)
			if ok {
				s.Env = append(s.Env, req.Payload)
			}
			if req.WantReply {
				_ = req.Reply(ok, nil)
			}
		case agentRequest:
			agent = c.agentRequested(req, agent)
		case "shell", "exec", "subsystem":
			s.Start = req
			return s, agent
		default: // x11-req, signal before start, ...
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}
	return nil, false
}

func resize(s *account.Setup, payload []byte) {
	var w account.WinChange
	if s.PTY != nil && ssh.Unmarshal(payload, &w) == nil {
		s.PTY.Cols, s.PTY.Rows, s.PTY.Width, s.PTY.Height = w.Cols, w.Rows, w.Width, w.Height
	}
}

func (c *conn) envAllowed(payload []byte) bool {
	var e envReq
	if ssh.Unmarshal(payload, &e) != nil || len(e.Value) > 4096 {
		return false
	}
	return c.b.Config.EnvAllowed(e.Name)
}

// filter applies to the user's requests once the session runs: agent
// forwarding is asked for before the start request or not at all.
func (c *conn) filter(req *ssh.Request) bool {
	switch req.Type {
	case "env":
		return c.envAllowed(req.Payload)
	case agentRequest, "x11-req":
		return false
	}
	return true
}

// session serves a "session" channel.
func (c *conn) session(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	s, agent := c.collect(reqs)
	if s == nil {
		_ = ch.Close()
		return
	}
	c.forceCommand(s)
	if c.dec.Gate {
		c.account().Serve(ch, reqs, s)
		return
	}
	if c.dec.Err != nil {
		c.fail(ch, s, c.dec.Err, 1)
		return
	}
	p := c.dec.Permit
	up, err := c.upstream()
	if err != nil {
		c.logPublic(err)
		c.fail(ch, s, err, 1)
		return
	}
	c.relaySession(ch, reqs, s, up, p, agent)
}

// forceCommand applies the force-command of the user's certificate: every
// session runs that command instead of what it asked for (a shell, a
// command, a subsystem such as sftp). On a target it is run there, as an
// exec; with no target it is read as one of the gate's own commands. The
// command is not logged (exec lines are audit material, not log lines).
func (c *conn) forceCommand(s *account.Setup) {
	if !c.dec.HasForce {
		return
	}
	c.log.Info("certificate force-command replaces the session request", "requested", s.Start.Type)
	s.Start.Type = "exec"
	s.Start.Payload = ssh.Marshal(struct{ Command string }{c.dec.ForceCommand})
}

// relaySession opens a session on the target, replays what the user asked
// for before the start request (agent: forward the user's agent, as the
// decision allows), starts it and relays.
func (c *conn) relaySession(ch ssh.Channel, reqs <-chan *ssh.Request, s *account.Setup, up *upConn, p policy.Permit, agent bool) {
	if msg := c.applyControls(s, p); msg != "" {
		c.fail(ch, s, &gate.PublicError{Public: msg}, 1)
		return
	}
	if err := c.auditAdmit(p, "session"); err != nil {
		c.fail(ch, s, err, 1)
		return
	}
	upCh, upReqs, err := up.client.OpenChannel("session", nil)
	if err != nil {
		c.log.Warn("target refused a session channel", "target", p.Target.Name, "err", err)
		c.fail(ch, s, fmt.Errorf("open session: %w", err), 1)
		return
	}
	if s.PTY != nil {
		if ok, err := upCh.SendRequest("pty-req", true, ssh.Marshal(s.PTY)); err != nil || !ok {
			c.log.Warn("target refused a pty", "target", p.Target.Name)
		}
	}
	for _, e := range s.Env {
		_, _ = upCh.SendRequest("env", false, e)
	}
	c.sendWebhookEnv(upCh)
	// The agent is forwarded until the target's session ends (before the
	// user's channel closes, so a session the user opens next never finds
	// this one's agent), or until this returns.
	agentDone := func() {}
	if agent && p.Controls.AgentForwarding {
		agentDone = sync.OnceFunc(c.forwardAgent(up, upCh))
		defer agentDone()
	}
	ob, err := c.observe(ch, upCh, s, p)
	if err != nil {
		_ = upCh.Close()
		c.fail(ch, s, err, 1)
		return
	}
	defer ob.end()
	defer c.b.drain.addSession(ob)() // ended at the drain's deadline (drain.go)
	upIn := c.stdinPipe(up, upCh, s) // upCh, or upCh with stdin on a pipe
	ok, err := upCh.SendRequest(s.Start.Type, true, s.Start.Payload)
	if s.Start.WantReply {
		_ = s.Start.Reply(ok && err == nil, nil)
	}
	if err != nil || !ok {
		_ = upIn.Close()
		_ = ch.Close()
		return
	}
	stdin := "channel"
	if _, ok := upIn.(*pipeChannel); ok {
		stdin = "pipe"
	}
	c.log.Info("session started", "target", p.Target.Name, "login", p.Login, "type", s.Start.Type, "pty", s.PTY != nil, "stdin", stdin)
	if s.PTY != nil {
		defer c.b.drain.addPTY(ch)() // told if the gate drains (drain.go)
	}
	// One session id for the recording, the live registry and the audit
	// events; one set of counters whose taps feed the recorder and the
	// audit parsers.
	sa := c.auditSession(ob.id, s, p, ob.counters, func() { _ = up.client.Close() })
	lim := startLimits(p.Controls.MaxSession, p.Controls.IdleTimeout, func(msg string) { c.message(ch, s, msg) },
		func() { _ = up.client.Close() })
	if lim != nil {
		addTap(ob.counters, lim)
	}
	down := c.sftpGuard(ch, s, p, ob.id)
	res := relay.Session(down, reqs, upIn, upReqs, ob.filter(c.filter), ob.counters, func(res relay.Result) {
		agentDone()
		if sa.lastWords(ch, s) {
			return
		}
		if reason, msg := lim.ended(); reason != "" {
			c.log.Info("session ended by the grant's limit", "target", p.Target.Name, "reason", reason)
			c.message(ch, s, msg)
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{1}))
			return
		}
		if res.ExitStatus == nil && res.ExitSignal == "" && !ob.killed.Load() {
			msg := fmt.Sprintf("connection to target %q lost", p.Target.Name)
			if up.ended != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if why := up.ended(ctx); why != "" {
					msg = why
				}
				cancel()
			}
			c.message(ch, s, msg)
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{255}))
		}
	})
	lim.close()
	reason, _ := lim.ended()
	sa.end(res, reason)
	status := "none"
	if res.ExitStatus != nil {
		status = strconv.Itoa(int(*res.ExitStatus))
	}
	c.log.Info("session ended", "target", p.Target.Name, "exit_status", status, "exit_signal", res.ExitSignal)
}

// message writes one line for the user on stderr.
func (c *conn) message(ch ssh.Channel, s *account.Setup, msg string) {
	account.Message(ch, s.PTY != nil, msg)
}

// fail answers a session that cannot go on: one line on stderr, an exit
// status, and the channel closed.
func (c *conn) fail(ch ssh.Channel, s *account.Setup, err error, status uint32) {
	if s.Start.WantReply {
		_ = s.Start.Reply(true, nil)
	}
	c.message(ch, s, publicText(err))
	account.Exit(ch, status)
}
