package broker

import (
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/relay"
)

// Agent forwarding (ssh -A), where the grant says --agent-forwarding
// (policy.Permit.Controls.AgentForwarding), on every kind of target:
//
//   - a session's auth-agent-req@openssh.com, before its start request, is
//     answered yes only when the decision allows it, and is then passed to
//     the target's session before the start request; afterwards, or without
//     the grant, it is answered no (OpenSSH warns and goes on);
//   - the target answers by opening auth-agent@openssh.com channels on its
//     connection, one per client of the socket it made for the session; the
//     gate opens the same channel type to the user's connection and relays
//     it, auditing each (agent.channel). It does so only while a session of
//     this target connection has had its request accepted by the target: an
//     agent channel the user's sessions did not ask for, or one opened after
//     they ended, is refused, and audited as refused.
const (
	agentRequest = "auth-agent-req@openssh.com"
	agentChannel = "auth-agent@openssh.com"
	// maxAgentChannels bounds the agent channels open at once on one target
	// connection: each holds a connection to the user's agent.
	maxAgentChannels = 32
)

// agentAllowed reports whether the connection's decision allows agent
// forwarding: a target, permitted, through a grant that says so.
func (c *conn) agentAllowed() bool {
	return !c.dec.Gate && c.dec.Err == nil && c.dec.Permit.Controls.AgentForwarding
}

// agentRequested answers a session's auth-agent-req@openssh.com, seen
// before the start request; asked says whether the session already had one
// accepted. It returns whether the session forwards the agent.
func (c *conn) agentRequested(req *ssh.Request, asked bool) bool {
	ok := asked || c.agentAllowed()
	if !ok {
		target := ""
		if !c.dec.Gate && c.dec.Err == nil {
			target = c.dec.Permit.Target.Name
		}
		c.log.Info("agent forwarding refused", "target", target)
	}
	if req.WantReply {
		_ = req.Reply(ok, nil)
	}
	return ok
}

// forwardAgent passes the user's agent request to the target's session
// upCh (before its start request) and, if the target accepts, counts the
// session as forwarding the agent on up until the returned func is called.
func (c *conn) forwardAgent(up *upConn, upCh ssh.Channel) (done func()) {
	ok, err := upCh.SendRequest(agentRequest, true, nil)
	if err != nil || !ok {
		c.log.Warn("target refused agent forwarding", "target", up.permit.Target.Name)
		return func() {}
	}
	c.mu.Lock()
	up.agentSessions++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		up.agentSessions--
		c.mu.Unlock()
	}
}

// agentChannel serves an auth-agent@openssh.com channel the target opened
// on up: relayed to a new channel of the same type on the user's
// connection when a session of up forwards the agent, refused otherwise.
func (c *conn) agentChannel(up *upConn, nc ssh.NewChannel) {
	p := up.permit
	ev := audit.Event{Type: audit.TypeAgentChannel, Channel: agentChannel, Target: p.Target.Name, Login: p.Login}
	refuse := func(reason string, why ssh.RejectionReason, msg string) {
		// Audited before the answer, so that whoever sees the refusal
		// can find its event.
		ev.Result, ev.Reason = "refused", reason
		c.emit(ev)
		_ = nc.Reject(why, msg)
		c.log.Info("agent channel refused", "target", p.Target.Name, "reason", reason)
	}
	c.mu.Lock()
	live, open := up.agentSessions, up.agentChannels
	ok := p.Controls.AgentForwarding && live > 0 && open < maxAgentChannels && c.ctx.Err() == nil
	if ok {
		up.agentChannels++
	}
	c.mu.Unlock()
	switch {
	case !p.Controls.AgentForwarding:
		refuse("not_permitted", ssh.Prohibited, "agent forwarding is not permitted")
		return
	case live == 0 || c.ctx.Err() != nil:
		refuse("not_requested", ssh.Prohibited, "no session forwards an agent")
		return
	case !ok:
		refuse("too_many", ssh.ResourceShortage, "too many agent channels")
		return
	}
	defer func() {
		c.mu.Lock()
		up.agentChannels--
		c.mu.Unlock()
	}()
	if err := c.auditAdmit(p, "agent channel"); err != nil {
		_ = nc.Reject(ssh.Prohibited, publicText(err))
		return
	}
	downCh, downReqs, err := c.sc.OpenChannel(agentChannel, nil)
	if err != nil {
		refuse("user_refused", ssh.ConnectionFailed, "the user's client refused the agent channel")
		return
	}
	upCh, upReqs, err := nc.Accept()
	if err != nil {
		_ = downCh.Close()
		return
	}
	var cnt relay.Counters
	start := time.Now()
	c.relayChannel(downCh, downReqs, upCh, upReqs, true, &cnt)
	ev.Result = "ok"
	ev.BytesIn, ev.BytesOut, ev.DurationMS = audit.Int64(cnt.In.Load()), audit.Int64(cnt.Out.Load()), audit.Millis(time.Since(start))
	c.emit(ev)
}
