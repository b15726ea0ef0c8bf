// Package account is the account side of a connection with no target:
// the gate's own commands (ls, config, whoami, keys, totp enroll, help) and,
// on a PTY, the account menu, with the sessions opened from it in place. The
// broker hands it a session channel and what it needs (Conn); it opens
// targets only through Conn.Open, so every target reached from here goes
// through the broker's one decision.
//
// Must not import: auth broker relay target/... sshd store/sqlite
package account

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
)

// PtyReq is the payload of a pty-req request (RFC 4254 6.2).
type PtyReq struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

// WinChange is the payload of a window-change request.
type WinChange struct {
	Cols, Rows    uint32
	Width, Height uint32
}

// Store is the part of the store the account side reads and writes.
type Store interface {
	EnvGroups(ctx context.Context) (map[string]string, error)
	GetUser(ctx context.Context, name string) (gate.User, error)
	ListKeys(ctx context.Context, user string) ([]gate.Key, error)
	AddKey(ctx context.Context, k gate.Key) error
	RemoveKey(ctx context.Context, user, fingerprint string) error
}

// Enroller stores TOTP enrolments.
type Enroller interface {
	Enrolled(ctx context.Context, user string) (bool, error)
	// Enrol activates secret for user if code is valid for it; ok is false
	// for a wrong code.
	Enrol(ctx context.Context, user, secret, code string) (ok bool, err error)
}

// Target is a target opened from the menu, logged in and ready for a shell.
type Target interface {
	// Shell runs a shell with the pty on ch, relaying reqs, until it ends.
	Shell(ch ssh.Channel, reqs <-chan *ssh.Request, pty PtyReq, env [][]byte)
	Close()
}

// Conn is what the account side knows of one connection.
type Conn struct {
	Ctx      context.Context
	Log      *slog.Logger
	Store    Store
	Identity gate.Identity
	// Snapshot reads what the user may reach now (the broker's one reader).
	Snapshot func(ctx context.Context) (policy.Snapshot, error)
	// Open decides and dials a target chosen in the menu; connecting is
	// called once the decision allows it, before the dial.
	Open         func(name string, connecting func(target, login string)) (Target, error)
	Host, Port   string   // where users reach the gate
	TOTP         Enroller // nil: `totp enroll` is off
	AfterSession string   // menu.after_session: "menu" or "disconnect"
	ProbeTimeout time.Duration
	SSO          *gate.SSOLogin // the login's single sign-on (nil: none), for `cert`
	SignClient   CertSigner     // nil: `cert` is off (no client CA)
	CertTTL      time.Duration  // auth.oidc.cert_ttl
	// JumpKnownHosts returns the known_hosts lines that trust the gate as
	// each of names for ssh -J (nil: ssh -J is off).
	JumpKnownHosts func(names []string) []string
	MOTDFile       string // menu.motd: shown at the top of the menu ("": none)
	// Watch starts watching live session id for `watch ID` (nil: off); its
	// error's public text is the one line the watcher reads.
	Watch func(id string) (Watch, error)
}

// Setup is what a session asked for before it started.
type Setup struct {
	PTY   *PtyReq
	Env   [][]byte // payloads of allowed env requests
	Start *ssh.Request
}

// Message writes one line for the user on stderr.
func Message(ch ssh.Channel, pty bool, msg string) {
	eol := "\n"
	if pty {
		eol = "\r\n"
	}
	_, _ = io.WriteString(ch.Stderr(), "sshgate: "+msg+eol)
}

// Exit ends a session channel: exit status before EOF and close (EOF first
// loses exit statuses of multiplexed clients).
func Exit(ch ssh.Channel, status uint32) {
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{status}))
	_ = ch.CloseWrite()
	_ = ch.Close()
}

func (c *Conn) message(ch ssh.Channel, s *Setup, msg string) { Message(ch, s.PTY != nil, msg) }

func (c *Conn) exit(ch ssh.Channel, status uint32) { Exit(ch, status) }

// fail answers a session that cannot go on: one line on stderr, an exit
// status, and the channel closed.
func (c *Conn) fail(ch ssh.Channel, s *Setup, msg string, status uint32) {
	if s.Start.WantReply {
		_ = s.Start.Reply(true, nil)
	}
	c.message(ch, s, msg)
	c.exit(ch, status)
}

const gateUsage = "usage: ssh USER@GATE ls [--json] | config | whoami | keys ls|add|rm | totp enroll | watch ID | help; connect to a target as USER+TARGET@GATE"

// Serve serves a session with no target: the gate's own commands, or
// with a PTY and no command, the list of targets to choose from.
func (c *Conn) Serve(ch ssh.Channel, reqs <-chan *ssh.Request, s *Setup) {
	switch s.Start.Type {
	case "shell":
		if s.PTY == nil {
			c.fail(ch, s, gateUsage, 2)
			return
		}
		c.accountMenu(ch, reqs, s) // menu.go
		return
	case "subsystem":
		c.fail(ch, s, gateUsage, 2)
		return
	}
	var cmd struct{ Command string }
	if err := ssh.Unmarshal(s.Start.Payload, &cmd); err != nil {
		c.fail(ch, s, gateUsage, 2)
		return
	}
	if c.isTOTPEnroll(cmd.Command) {
		c.totpEnroll(ch, reqs, s)
		return
	}
	if isWatch(cmd.Command) {
		c.watch(ch, reqs, s, cmd.Command) // watch.go
		return
	}
	if s.Start.WantReply {
		_ = s.Start.Reply(true, nil)
	}
	go discard(reqs)
	out := io.Writer(ch)
	if s.PTY != nil {
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
	// The NODEID, aliases, and the direct NODEID-UID username.
	ID       int64    `json:"id,omitempty"`
	Aliases  []string `json:"aliases,omitempty"`
	Primary  bool     `json:"primary,omitempty"`
	Group    string   `json:"group,omitempty"`
	Platform string   `json:"platform_user,omitempty"`
}

// command runs a gate command and returns its exit status (2: usage, 3: internal).
func (c *Conn) command(out io.Writer, args []string) int {
	if len(args) == 0 {
		return 2
	}
	switch {
	case args[0] == "help" && len(args) == 1:
		fmt.Fprintln(out, gateUsage)
		return 0
	case args[0] == "ls" && len(args) == 1, args[0] == "ls" && len(args) == 2 && args[1] == "--json":
		snap, err := c.snapshot()
		if err != nil {
			return 3
		}
		access := snap.Reachable()
		host, port := c.Host, c.Port
		views := []targetView{}
		for _, a := range access {
			v := targetView{Name: a.Target.Name, Env: a.Target.Env, Kind: a.Target.Kind, Logins: []string{}}
			for _, l := range a.Logins {
				v.Logins = append(v.Logins, loginLabel(l.Name))
				v.Forwarding = v.Forwarding || l.Forwarding
			}
			v.SSH = fmt.Sprintf("ssh -p %s %s+%s@%s", port, c.Identity.User, a.Target.Name, host)
			views = append(views, v)
		}
		c.decorate(snap, views)
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
	case args[0] == "config" && len(args) == 2 && args[1] == "known-hosts":
		snap, err := c.snapshot()
		if err != nil {
			return 3
		}
		if c.JumpKnownHosts == nil {
			return 2
		}
		for _, l := range c.JumpKnownHosts(jumpNames(snap)) {
			fmt.Fprintln(out, l)
		}
		return 0
	case args[0] == "config" && len(args) == 1:
		snap, err := c.snapshot()
		if err != nil {
			return 3
		}
		access := snap.Reachable()
		host, port := c.Host, c.Port
		if lines := c.jumpKnownHosts(snap); len(lines) > 0 {
			// -J takes [USER@]HOST[:PORT]: an IPv6 address in brackets.
			fmt.Fprintf(out, "# ssh -J %s@%s LOGIN@TARGET reaches these targets through the gate, which presents\n", c.Identity.User, net.JoinHostPort(host, port))
			fmt.Fprintf(out, "# itself as each of them. Trust it with this known_hosts line\n")
			fmt.Fprintf(out, "# (ssh -p %s %s@%s config known-hosts >> ~/.ssh/known_hosts):\n", port, c.Identity.User, host)
			for _, l := range lines {
				fmt.Fprintf(out, "#   %s\n", l)
			}
			fmt.Fprintln(out)
		}
		for i, a := range access {
			for j, l := range a.Logins {
				alias, user := a.Target.Name, c.Identity.User+"+"+a.Target.Name
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

func (c *Conn) jumpKnownHosts(snap policy.Snapshot) []string {
	if c.JumpKnownHosts == nil {
		return nil
	}
	return c.JumpKnownHosts(jumpNames(snap))
}

// jumpNames are the hostnames ssh -J may name for the user's targets: each
// target's name and aliases.
func jumpNames(snap policy.Snapshot) []string {
	aliases := map[string][]string{}
	for _, ti := range snap.Infos {
		aliases[ti.Target] = ti.Aliases
	}
	var names []string
	for _, a := range snap.Reachable() {
		names = append(names, a.Target.Name)
		names = append(names, aliases[a.Target.Name]...)
	}
	return names
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
		return policy.DefaultLogin
	}
	return l
}

// snapshot reads what the user may reach now; the error is logged.
func (c *Conn) snapshot() (policy.Snapshot, error) {
	snap, err := c.Snapshot(c.Ctx)
	if err != nil {
		c.Log.Error("read policy", "err", err)
	}
	return snap, err
}
