package broker

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/relay"
)

// Local forwarding (ssh -L): a direct-tcpip channel to HOST:PORT, or a
// direct-streamlocal@openssh.com channel to a unix socket on the target
// (ssh -L PORT:/PATH). The gate checks the destination against the grant's
// reach (policy.Reach: --forward-to) before the target hears of it, on the
// destination exactly as the client spelt it (the gate resolves nothing),
// and sends the target only what it checked. Every attempt is audited: a
// forward event with result ok, failed (the target refused or could not
// connect) or denied (with a reason).

const streamLocal = "direct-streamlocal@openssh.com"

// directTCPIPMsg is a direct-tcpip open payload (RFC 4254 7.2).
type directTCPIPMsg struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// streamLocalMsg is a direct-streamlocal@openssh.com open payload
// (OpenSSH PROTOCOL 2.4).
type streamLocalMsg struct {
	Path      string
	Reserved  string
	Reserved2 uint32
}

// Reasons of a denied forward in its audit event.
const (
	reasonNoTarget     = "no_target"
	reasonNotPermitted = "forwarding_not_permitted"
	reasonNotAllowed   = "destination_not_allowed"
	reasonBadOpen      = "malformed_open"
)

// directTCPIP relays local port forwarding (ssh -L) when the grant allows
// it to that destination.
func (c *conn) directTCPIP(nc ssh.NewChannel) {
	if name, ok := c.jumpTarget(nc); ok {
		c.jump(nc, name)
		return
	}
	var m directTCPIPMsg
	if ssh.Unmarshal(nc.ExtraData(), &m) != nil {
		c.refuseForward(nc, "direct-tcpip", "", reasonBadOpen, "malformed direct-tcpip request")
		return
	}
	dest := net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))
	c.localForward(nc, "direct-tcpip", dest, ssh.Marshal(&m), func(r policy.Reach) bool { return r.TCP(m.Host, m.Port) })
}

// directStreamLocal relays a local forward to a unix socket on the target
// (ssh -L PORT:/PATH) when a --forward-to of the grant names that socket.
func (c *conn) directStreamLocal(nc ssh.NewChannel) {
	var m streamLocalMsg
	if ssh.Unmarshal(nc.ExtraData(), &m) != nil {
		c.refuseForward(nc, streamLocal, "", reasonBadOpen, "malformed streamlocal request")
		return
	}
	c.localForward(nc, streamLocal, m.Path, ssh.Marshal(&m), func(r policy.Reach) bool { return r.Socket(m.Path) })
}

// localForward checks a local forward of kind to dest (payload: what the
// target is sent) against the connection's decision and reach, then relays
// it.
func (c *conn) localForward(nc ssh.NewChannel, kind, dest string, payload []byte, reach func(policy.Reach) bool) {
	if c.dec.Gate {
		c.refuseForward(nc, kind, dest, reasonNoTarget, errNeedsTarget.Public)
		return
	}
	if c.dec.Err != nil {
		c.refuseForward(nc, kind, dest, reasonNotPermitted, c.dec.Err.UserMessage())
		return
	}
	p := c.dec.Permit
	if err := c.auditAdmit(p, "forwarded channel"); err != nil {
		_ = nc.Reject(ssh.Prohibited, publicText(err))
		return
	}
	if !p.Forwarding {
		if c.refusalAudited() {
			c.log.Info("port forwarding refused", "target", p.Target.Name)
		}
		c.refuseForward(nc, kind, dest, reasonNotPermitted, fmt.Sprintf("port forwarding is not permitted for target %s", p.Target.Name))
		return
	}
	if !reach(p.Reach) {
		if c.refusalAudited() {
			c.log.Info("forward destination refused", "target", p.Target.Name, "destination", printableDest(dest))
		}
		c.refuseForward(nc, kind, dest, reasonNotAllowed,
			fmt.Sprintf("forwarding to %s is not permitted for target %s", printableDest(dest), p.Target.Name))
		return
	}
	up, err := c.upstream()
	if err != nil {
		c.logPublic(err)
		_ = nc.Reject(ssh.ConnectionFailed, publicText(err))
		c.auditForwardResult(kind, dest, "failed", "")
		return
	}
	upCh, upReqs, err := up.client.OpenChannel(kind, payload)
	if err != nil {
		var oe *ssh.OpenChannelError
		if errors.As(err, &oe) {
			_ = nc.Reject(oe.Reason, oe.Message)
		} else {
			_ = nc.Reject(ssh.ConnectionFailed, "the target could not open the connection")
		}
		c.auditForwardResult(kind, dest, "failed", "")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		_ = upCh.Close()
		return
	}
	c.auditForward(kind, dest, p, func(cnt *relay.Counters) {
		c.relayChannel(ch, reqs, upCh, upReqs, true, cnt)
	})
}

// refuseForward answers a local forward with administratively prohibited
// and msg, and audits the attempt as denied for reason.
func (c *conn) refuseForward(nc ssh.NewChannel, kind, dest, reason, msg string) {
	_ = nc.Reject(ssh.Prohibited, msg)
	c.auditForwardResult(kind, dest, "denied", reason)
}

// auditForwardResult records a local forward that carried nothing: the
// first auditedRefusals of a connection one by one, the rest as a count
// (auditSuppressedForwards).
func (c *conn) auditForwardResult(kind, dest, result, reason string) {
	c.mu.Lock()
	c.refused++
	over := c.refused > auditedRefusals
	c.mu.Unlock()
	if over {
		return
	}
	c.emit(c.forwardResultEvent(audit.Event{Type: audit.TypeForward, Channel: kind, Destination: dest, Result: result, Reason: reason}))
}

// refusalAudited reports whether the next refused forward is still written
// as its own event (and logged).
func (c *conn) refusalAudited() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused < auditedRefusals
}

// auditSuppressedForwards writes, as the connection ends, the one event
// standing for the n refused forwards past auditedRefusals.
func (c *conn) auditSuppressedForwards(n int64) {
	c.log.Info("refused forwards not audited one by one", "count", n)
	c.emit(c.forwardResultEvent(audit.Event{Type: audit.TypeForward, Result: "suppressed", Count: audit.Int64(n)}))
}

// forwardResultEvent fills in e's target and login as far as they are known.
func (c *conn) forwardResultEvent(e audit.Event) audit.Event {
	if !c.dec.Gate && c.dec.Err == nil {
		e.Target, e.Login = c.dec.Permit.Target.Name, c.dec.Permit.Login
	} else if !c.sess.BadTarget {
		e.Target = c.sess.Route.Target
	}
	return e
}

// printableDest shows a client's destination in a message or log: control
// and non-ASCII bytes as '?', cut at 128 bytes.
func printableDest(s string) string {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	b := []byte(s)
	for i, ch := range b {
		if ch < 0x20 || ch > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
