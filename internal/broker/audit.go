package broker

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/account"
	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/audit/xfer"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/relay"
)

// Auditor is where the broker records what users do (an *audit.Logger).
type Auditor interface {
	Emit(e audit.Event)
	// Health reports whether the record is being kept, and a channel closed
	// when it stops being kept.
	Health() (ok bool, failed <-chan struct{})
}

// emit records e with the connection's fields.
func (c *conn) emit(e audit.Event) {
	if c.b.Audit == nil {
		return
	}
	e.ConnID = c.sc.ID
	e.User = c.id.User
	c.b.Audit.Emit(e)
}

// auditConn records the connection's opening and returns what records its close.
func (c *conn) auditConn() func() {
	start := time.Now()
	open := audit.Event{Type: audit.TypeConnOpen, ClientAddr: c.sc.RemoteAddr().String(),
		AuthMethod: c.id.Method, KeyFP: c.id.Fingerprint, Via: c.sess.JumpVia}
	if sso := c.sess.SSO; sso != nil {
		open.SSOSubject, open.AMR, open.SSOReused = sso.Subject, sso.AMR, sso.Reused
		if open.AMR == nil {
			open.AMR = []string{}
		}
	}
	c.emit(open)
	return func() {
		c.emit(audit.Event{Type: audit.TypeConnClose, ClientAddr: c.sc.RemoteAddr().String(), DurationMS: audit.Millis(time.Since(start))})
	}
}

func (c *conn) auditTarget(p policy.Permit) {
	c.emit(audit.Event{Type: audit.TypeTargetChosen, Target: p.Target.Name, Login: p.Login})
}

// errAuditDown refuses a session to a fail-closed target.
func errAuditDown(target string) *gate.PublicError {
	return gate.Errorf(nil, "target %q requires the audit log, which is unavailable now; try again later", target)
}

// auditAdmit refuses a new session or channel to a fail-closed target while
// the audit record is not being kept.
func (c *conn) auditAdmit(p policy.Permit, what string) error {
	if c.b.Audit == nil || !c.b.AuditFailClosed(p.Target.Name) {
		return nil
	}
	if ok, _ := c.b.Audit.Health(); ok {
		return nil
	}
	pe := errAuditDown(p.Target.Name)
	c.log.Warn("refusing a "+what+": the audit log is failing and the target is fail-closed", "target", p.Target.Name, "ref", pe.Ref)
	c.emit(audit.Event{Type: audit.TypeSessionDeny, Target: p.Target.Name, Login: p.Login, Reason: "audit_unavailable"})
	return pe
}

// sessionAudit records one relayed session: its start and end, its command
// and PTY, the files it moves; and, for a fail-closed target, ends it when
// the record stops being kept.
type sessionAudit struct {
	c      *conn
	id     string
	p      policy.Permit
	typ    string
	start  time.Time
	parser *xfer.Session
	cnt    *relay.Counters // shared with the session's other observers
	killed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

// auditSession starts the record of a session whose start request the
// target accepted. If the record fails on a fail-closed target, cut ends the
// session: it closes the target connection, as closing only the channel
// leaves sshd waiting for the command to exit.
func (c *conn) auditSession(id string, s *account.Setup, p policy.Permit, cnt *relay.Counters, cut func()) *sessionAudit {
	if c.b.Audit == nil {
		return nil
	}
	sa := &sessionAudit{c: c, id: id, p: p, typ: s.Start.Type, start: time.Now(), stop: make(chan struct{}), cnt: cnt}
	base := audit.Event{SessionID: sa.id, Target: p.Target.Name, Login: p.Login}
	ev := func(typ string) audit.Event { e := base; e.Type = typ; return e }

	e := ev(audit.TypeSessionStart)
	e.SessionType = s.Start.Type
	arg := ""
	switch s.Start.Type {
	case "exec", "subsystem":
		var v struct{ S string }
		if ssh.Unmarshal(s.Start.Payload, &v) == nil {
			arg = v.S
		}
		if s.Start.Type == "subsystem" {
			e.Subsystem = arg
		}
	}
	c.emit(e)
	if s.PTY != nil {
		e := ev(audit.TypePTY)
		e.Term, e.Cols, e.Rows = s.PTY.Term, s.PTY.Cols, s.PTY.Rows
		c.emit(e)
	}
	if s.Start.Type == "exec" {
		e := ev(audit.TypeExec)
		e.Command = arg
		c.emit(e)
	}
	opt := xfer.Options{NoHash: c.b.Config.Audit.FileHash == config.FileHashNone}
	if fp := xfer.For(s.Start.Type, arg, func(f audit.Event) {
		f.SessionID, f.Target, f.Login = sa.id, p.Target.Name, p.Login
		c.emit(f)
	}, opt); fp != nil {
		sa.parser = xfer.NewSession(fp)
		sa.parser.OnFault = func(v any) {
			c.log.Error("file-transfer audit stopped: its parser failed on this session's data", "session_id", sa.id, "target", p.Target.Name, "fault", fmt.Sprint(v))
		}
	}
	addTap(cnt, sa)

	if c.b.AuditFailClosed(p.Target.Name) {
		_, failed := c.b.Audit.Health()
		sa.wg.Add(1)
		go func() {
			defer sa.wg.Done()
			select {
			case <-failed:
				sa.killed.Store(true)
				c.log.Warn("ending a session: the audit log is failing and the target is fail-closed", "target", p.Target.Name, "session_id", sa.id)
				cut()
			case <-sa.stop:
			}
		}()
	}
	return sa
}

// addTap adds tap to the taps of cnt (before the relay starts).
func addTap(cnt *relay.Counters, tap relay.Tap) {
	switch t := cnt.Tap.(type) {
	case nil:
		cnt.Tap = relay.Taps{tap}
	case relay.Taps:
		cnt.Tap = append(t, tap)
	default:
		cnt.Tap = relay.Taps{t, tap}
	}
}

// Data feeds the file-protocol parser (relay.Tap).
func (sa *sessionAudit) Data(s relay.Stream, b []byte) {
	if sa.parser == nil {
		return
	}
	switch s {
	case relay.ToTarget:
		sa.parser.ToTarget(b)
	case relay.ToUser:
		sa.parser.ToUser(b)
	}
}

const auditEndedMessage = "the audit log became unavailable and target %q requires it: session ended"

// lastWords tells the user why a session ended when the audit failure ended
// it, and reports whether it did.
func (sa *sessionAudit) lastWords(ch ssh.Channel, s *account.Setup) bool {
	if sa == nil || !sa.killed.Load() {
		return false
	}
	sa.c.message(ch, s, fmt.Sprintf(auditEndedMessage, sa.p.Target.Name))
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{255}))
	return true
}

// end records the session's end; reason says why the gate ended it ("" for
// none): a grant's limit (idle_timeout, max_session).
func (sa *sessionAudit) end(res relay.Result, reason string) {
	if sa == nil {
		return
	}
	close(sa.stop)
	sa.wg.Wait()
	if sa.parser != nil {
		sa.parser.End(res.ExitStatus != nil && *res.ExitStatus == 0)
	}
	e := audit.Event{Type: audit.TypeSessionEnd, SessionID: sa.id, Target: sa.p.Target.Name, Login: sa.p.Login,
		SessionType: sa.typ, ExitStatus: res.ExitStatus, ExitSignal: res.ExitSignal,
		BytesIn: audit.Int64(sa.cnt.In.Load()), BytesOut: audit.Int64(sa.cnt.Out.Load()), DurationMS: audit.Millis(time.Since(sa.start))}
	e.Reason = reason
	if sa.killed.Load() {
		e.Reason = "audit_unavailable"
	}
	sa.c.emit(e)
}

// auditForward relays a forwarded channel (kind direct-tcpip or
// forwarded-tcpip, with its open payload) through run and records it.
func (c *conn) auditForward(kind string, extra []byte, p policy.Permit, run func(*relay.Counters)) {
	if c.b.Audit == nil {
		run(nil)
		return
	}
	var cnt relay.Counters
	start := time.Now()
	run(&cnt)
	c.emit(audit.Event{Type: audit.TypeForward, Channel: kind, Destination: forwardDest(kind, extra),
		Target: p.Target.Name, Login: p.Login,
		BytesIn: audit.Int64(cnt.In.Load()), BytesOut: audit.Int64(cnt.Out.Load()), DurationMS: audit.Millis(time.Since(start))})
}

// auditRemoteForward records a tcpip-forward or cancel-tcpip-forward request.
func (c *conn) auditRemoteForward(typ string, payload []byte, ok bool) {
	var v struct {
		Addr string
		Port uint32
	}
	dest := ""
	if ssh.Unmarshal(payload, &v) == nil {
		dest = net.JoinHostPort(v.Addr, strconv.Itoa(int(v.Port)))
	}
	e := audit.Event{Type: audit.TypeForward, Channel: typ, Destination: dest, Result: "failed"}
	if ok {
		e.Result = "ok"
	}
	if !c.sess.BadTarget {
		e.Target = c.sess.Route.Target
	}
	c.emit(e)
}

// forwardDest is "host:port" from a direct-tcpip or forwarded-tcpip open
// payload: where the connection goes (direct-tcpip) or which listening
// address it came in on (forwarded-tcpip).
func forwardDest(kind string, extra []byte) string {
	var v struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if ssh.Unmarshal(extra, &v) != nil {
		return ""
	}
	return net.JoinHostPort(v.Host, strconv.Itoa(int(v.Port)))
}
