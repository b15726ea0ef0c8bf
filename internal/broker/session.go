package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/relay"
)

// ptyReq is the payload of a pty-req request (RFC 4254 6.2).
type ptyReq struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

// winChange is the payload of a window-change request.
type winChange struct {
	Cols, Rows    uint32
	Width, Height uint32
}

type envReq struct{ Name, Value string }

// setup is what a session asked for before it started.
type setup struct {
	pty   *ptyReq
	env   [][]byte // payloads of allowed env requests
	start *ssh.Request
}

// collect reads requests until the one that starts the session (shell,
// exec, subsystem). It returns nil if the channel closed first.
func (c *conn) collect(reqs <-chan *ssh.Request) *setup {
	s := &setup{}
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			var p ptyReq
			if err := ssh.Unmarshal(req.Payload, &p); err != nil || len(p.Term) > 256 || len(p.Modes) > 1024 || !c.certPTY() {
				_ = req.Reply(false, nil)
				continue
			}
			s.pty = &p
			_ = req.Reply(true, nil)
		case "window-change":
			s.resize(req.Payload)
		case "env":
			ok := c.envAllowed(req.Payload)
			if ok {
				s.env = append(s.env, req.Payload)
			}
			if req.WantReply {
				_ = req.Reply(ok, nil)
			}
		case "shell", "exec", "subsystem":
			s.start = req
			return s
		default: // auth-agent-req@openssh.com, x11-req, signal before start, ...
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}
	return nil
}

func (s *setup) resize(payload []byte) {
	var w winChange
	if s.pty != nil && ssh.Unmarshal(payload, &w) == nil {
		s.pty.Cols, s.pty.Rows, s.pty.Width, s.pty.Height = w.Cols, w.Rows, w.Width, w.Height
	}
}

func (c *conn) envAllowed(payload []byte) bool {
	var e envReq
	if ssh.Unmarshal(payload, &e) != nil || len(e.Value) > 4096 {
		return false
	}
	return c.b.cfg.EnvAllowed(e.Name)
}

// filter applies to the user's requests once the session runs.
func (c *conn) filter(req *ssh.Request) bool {
	switch req.Type {
	case "env":
		return c.envAllowed(req.Payload)
	case "auth-agent-req@openssh.com", "x11-req":
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
	s := c.collect(reqs)
	if s == nil {
		_ = ch.Close()
		return
	}
	c.forceCommand(s)
	if c.resolve().gate && !c.hookRoutes() {
		c.gateSession(ch, reqs, s)
		return
	}
	p, err := c.permit()
	if err != nil {
		c.fail(ch, s, err, 1)
		return
	}
	up, err := c.upstream()
	if err != nil {
		c.logPublic(err)
		c.fail(ch, s, err, 1)
		return
	}
	c.relaySession(ch, reqs, s, up, p)
}

// relaySession opens a session on the target, replays what the user asked
// for before the start request, starts it and relays.
func (c *conn) relaySession(ch ssh.Channel, reqs <-chan *ssh.Request, s *setup, up *upConn, p policy.Permit) {
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
	if s.pty != nil {
		if ok, err := upCh.SendRequest("pty-req", true, ssh.Marshal(s.pty)); err != nil || !ok {
			c.log.Warn("target refused a pty", "target", p.Target.Name)
		}
	}
	for _, e := range s.env {
		_, _ = upCh.SendRequest("env", false, e)
	}
	c.sendWebhookEnv(upCh)
	ob, err := c.observe(ch, upCh, s, p)
	if err != nil {
		_ = upCh.Close()
		c.fail(ch, s, err, 1)
		return
	}
	defer ob.end()
	ok, err := upCh.SendRequest(s.start.Type, true, s.start.Payload)
	if s.start.WantReply {
		_ = s.start.Reply(ok && err == nil, nil)
	}
	if err != nil || !ok {
		_ = upCh.Close()
		_ = ch.Close()
		return
	}
	c.log.Info("session started", "target", p.Target.Name, "login", p.Login, "type", s.start.Type, "pty", s.pty != nil)
	// One session id for the recording, the live registry and the audit
	// events; one set of counters whose taps feed the recorder and the
	// audit parsers.
	sa := c.auditSession(ob.id, s, p, ob.counters, func() { _ = up.client.Close() })
	res := relay.Session(ch, reqs, upCh, upReqs, ob.filter(c.filter), ob.counters, func(res relay.Result) {
		if sa.lastWords(ch, s) {
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
	sa.end(res)
	status := "none"
	if res.ExitStatus != nil {
		status = strconv.Itoa(int(*res.ExitStatus))
	}
	c.log.Info("session ended", "target", p.Target.Name, "exit_status", status, "exit_signal", res.ExitSignal)
}

// message writes one line for the user on stderr.
func (c *conn) message(ch ssh.Channel, s *setup, msg string) {
	eol := "\n"
	if s.pty != nil {
		eol = "\r\n"
	}
	_, _ = io.WriteString(ch.Stderr(), "sshgate: "+msg+eol)
}

// fail answers a session that cannot go on: one line on stderr, an exit
// status, and the channel closed.
func (c *conn) fail(ch ssh.Channel, s *setup, err error, status uint32) {
	if s.start.WantReply {
		_ = s.start.Reply(true, nil)
	}
	c.message(ch, s, publicText(err))
	c.exit(ch, status)
}

func (c *conn) exit(ch ssh.Channel, status uint32) {
	_ = ch.CloseWrite()
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{status}))
	_ = ch.Close()
}

const gateUsage = "usage: ssh USER@GATE ls [--json] | config | whoami | keys ls|add|rm | totp enroll | help; connect to a target as USER+TARGET@GATE"

// gateSession serves a session with no target: the gate's own commands, or
// with a PTY and no command, the list of targets to choose from.
func (c *conn) gateSession(ch ssh.Channel, reqs <-chan *ssh.Request, s *setup) {
	switch s.start.Type {
	case "shell":
		if s.pty == nil {
			c.fail(ch, s, errUsage, 2)
			return
		}
		c.accountMenu(ch, reqs, s) // menu.go
		return
	case "subsystem":
		c.fail(ch, s, errUsage, 2)
		return
	}
	var cmd struct{ Command string }
	if err := ssh.Unmarshal(s.start.Payload, &cmd); err != nil {
		c.fail(ch, s, errUsage, 2)
		return
	}
	if c.isTOTPEnroll(cmd.Command) {
		c.totpEnroll(ch, reqs, s)
		return
	}
	if s.start.WantReply {
		_ = s.start.Reply(true, nil)
	}
	go discard(reqs)
	out := io.Writer(ch)
	if s.pty != nil {
		out = crlfWriter{ch}
	}
	args := strings.Fields(cmd.Command)
	status, ok := c.accountCommand(stdinOf(ch, s), out, ch.Stderr(), args)
	if !ok {
		status = c.command(out, args)
	}
	switch status {
	case 2:
		c.message(ch, s, gateUsage)
	case reported: // gatecmd.go: the command said what was wrong
		status = 2
	}
	if status == 3 {
		c.message(ch, s, "the gate cannot read its policy")
		status = 1
	}
	c.exit(ch, uint32(status))
}

// errUsage answers a session with no target that is not a gate command.
var errUsage = &gate.PublicError{Public: gateUsage}

func discard(reqs <-chan *ssh.Request) {
	for r := range reqs {
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
}

// targetView is one entry of `ls --json`.
type targetView struct {
	Name       string   `json:"name"`
	Env        string   `json:"env"`
	Kind       string   `json:"kind"`
	Logins     []string `json:"logins"`
	Forwarding bool     `json:"forwarding"`
	SSH        string   `json:"ssh"`
	// issue 4 (menu.go): the NODEID and the direct NODEID-UID username.
	ID       int64    `json:"id,omitempty"`
	Aliases  []string `json:"aliases,omitempty"`
	Primary  bool     `json:"primary,omitempty"`
	Group    string   `json:"group,omitempty"`
	Platform string   `json:"platform_user,omitempty"`
}

// command runs a gate command and returns its exit status (2: usage, 3: internal).
func (c *conn) command(out io.Writer, args []string) int {
	if len(args) == 0 {
		return 2
	}
	switch {
	case args[0] == "help" && len(args) == 1:
		fmt.Fprintln(out, gateUsage)
		return 0
	case args[0] == "ls" && len(args) == 1, args[0] == "ls" && len(args) == 2 && args[1] == "--json":
		access, err := c.accessible()
		if err != nil {
			c.log.Error("read policy", "err", err)
			return 3
		}
		host, port := c.advertise()
		views := []targetView{}
		for _, a := range access {
			v := targetView{Name: a.Target.Name, Env: a.Target.Env, Kind: a.Target.Kind, Logins: []string{}}
			for _, l := range a.Logins {
				v.Logins = append(v.Logins, loginLabel(l.Name))
				v.Forwarding = v.Forwarding || l.Forwarding
			}
			v.SSH = fmt.Sprintf("ssh -p %s %s+%s@%s", port, c.id.User, a.Target.Name, host)
			views = append(views, v)
		}
		c.decorate(views)
		if len(args) == 2 {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			_ = enc.Encode(views)
			return 0
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TARGET\tENV\tLOGINS\tFORWARDING\tCONNECT")
		for _, v := range views {
			fwd := "no"
			if v.Forwarding {
				fwd = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Name, v.Env, strings.Join(v.Logins, ","), fwd, v.SSH)
		}
		_ = tw.Flush()
		return 0
	case args[0] == "config" && len(args) == 1:
		access, err := c.accessible()
		if err != nil {
			c.log.Error("read policy", "err", err)
			return 3
		}
		host, port := c.advertise()
		for i, a := range access {
			for j, l := range a.Logins {
				alias, user := a.Target.Name, c.id.User+"+"+a.Target.Name
				if j > 0 {
					alias += "+" + l.Name
					user += "+" + l.Name
				}
				if i > 0 || j > 0 {
					fmt.Fprintln(out)
				}
				fmt.Fprintf(out, "Host %s\n    HostName %s\n    Port %s\n    User %s\n", alias, host, port, user)
			}
		}
		return 0
	}
	return 2
}

// advertise is the host and port users reach the gate at.
func (c *conn) advertise() (string, string) {
	if h, p, ok := c.b.cfg.AdvertiseHostPort(); ok {
		return h, p
	}
	h, p, err := net.SplitHostPort(c.sc.LocalAddr().String())
	if err != nil {
		return c.sc.LocalAddr().String(), "22"
	}
	return h, p
}

// crlfWriter turns \n into \r\n for output on a PTY channel.
type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	_, err := c.w.Write([]byte(strings.ReplaceAll(string(p), "\n", "\r\n")))
	return len(p), err
}

// loginLabel shows the empty login (a container's own user) readably.
func loginLabel(l string) string {
	if l == "" {
		return "default"
	}
	return l
}
