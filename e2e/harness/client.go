package harness

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Client runs the real OpenSSH client programs against a gate (or any SSH
// server) as one user with one key, trusting only the given known_hosts.
type Client struct {
	Host       string
	Port       int
	User       string // gate user, e.g. "alice"
	Key        string // private key path; empty for password clients
	KnownHosts string
	Password   string // when set, commands run under sshpass with password auth
	Env        []string
	// FixedLogin, when set, is the login for every target: a client of a
	// plain sshd (Direct), to run the same tests against OpenSSH alone.
	FixedLogin string
	// Opts are -o options that take precedence over the defaults (ssh
	// keeps the first value it is given), e.g. "UpdateHostKeys=yes".
	Opts []string
	// Context, when set, kills the commands the client prepares once it is
	// done (exec.CommandContext).
	Context context.Context
}

// Login is the SSH user name that routes to target ("alice+web-1"), or the
// bare user when target is empty.
func (c *Client) Login(target string) string {
	if c.FixedLogin != "" {
		return c.FixedLogin
	}
	if target == "" {
		return c.User
	}
	return c.User + "+" + target
}

// Dest is LOGIN@HOST for target.
func (c *Client) Dest(target string) string { return c.Login(target) + "@" + c.Host }

// Options are the -o style options every tool gets (without the port flag,
// whose spelling differs between ssh and scp/sftp).
func (c *Client) Options() []string {
	opts := []string{"-F", "none"}
	for _, o := range c.Opts {
		opts = append(opts, "-o", o)
	}
	opts = append(opts,
		"-o", "UserKnownHostsFile="+c.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no",
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
		"-o", "ConnectTimeout=20",
		"-o", "ServerAliveInterval=0",
	)
	if c.Password != "" {
		opts = append(opts,
			"-o", "BatchMode=no",
			"-o", "PubkeyAuthentication=no",
			// The password method alone: the gate also takes passwords over
			// keyboard-interactive, whose second prompt after a wrong password
			// would make sshpass exit 5 instead of ssh's 255.
			"-o", "PreferredAuthentications=password",
			"-o", "NumberOfPasswordPrompts=1",
		)
	} else {
		opts = append(opts,
			"-o", "BatchMode=yes",
			"-o", "IdentitiesOnly=yes",
			"-o", "PasswordAuthentication=no",
			"-o", "KbdInteractiveAuthentication=no",
			"-i", c.Key,
		)
	}
	return opts
}

func (c *Client) command(name string, args []string) *exec.Cmd {
	if c.Password != "" {
		args = append([]string{"-p", c.Password, name}, args...)
		name = "sshpass"
	}
	ctx := c.Context
	if ctx == nil {
		ctx = context.Background()
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), "SSH_AUTH_SOCK="), c.Env...)
	return cmd
}

// SSH prepares `ssh OPTIONS -p PORT ARGS...`; args usually start with
// c.Dest(target).
func (c *Client) SSH(args ...string) *exec.Cmd {
	a := append(c.Options(), "-p", strconv.Itoa(c.Port))
	return c.command("ssh", append(a, args...))
}

// SSHTo prepares `ssh ... LOGIN@HOST [REMOTE COMMAND]` for target, with
// extra ssh flags (e.g. "-tt") before the destination.
func (c *Client) SSHTo(target string, flags []string, remote ...string) *exec.Cmd {
	a := append(append([]string{}, flags...), c.Dest(target))
	return c.SSH(append(a, remote...)...)
}

// SCP prepares `scp OPTIONS -P PORT ARGS...` (add "-O" for the legacy SCP
// protocol; the default is SFTP mode).
func (c *Client) SCP(args ...string) *exec.Cmd {
	a := append(append(c.Options(), "-q", "-P", strconv.Itoa(c.Port)), args...)
	return c.command("scp", a)
}

// SFTP prepares `sftp OPTIONS -P PORT ARGS...` (e.g. "-b", batchfile, dest).
func (c *Client) SFTP(args ...string) *exec.Cmd {
	a := append(append(c.Options(), "-P", strconv.Itoa(c.Port)), args...)
	return c.command("sftp", a)
}

// SSHCommandLine is the ssh command with every option, quoted for a shell,
// for rsync -e and GIT_SSH_COMMAND (which add the destination themselves).
func (c *Client) SSHCommandLine() string {
	parts := []string{"ssh"}
	for _, o := range append(c.Options(), "-p", strconv.Itoa(c.Port)) {
		parts = append(parts, ShellQuote(o))
	}
	return strings.Join(parts, " ")
}

// Rsync prepares `rsync -e "ssh ..." ARGS...`.
func (c *Client) Rsync(args ...string) *exec.Cmd {
	return c.command("rsync", append([]string{"-e", c.SSHCommandLine()}, args...))
}

// Git prepares `git ARGS...` with GIT_SSH_COMMAND set to the client's ssh,
// and URL is the ssh:// URL for a path on target.
func (c *Client) Git(args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	env := append(os.Environ(), "SSH_AUTH_SOCK=", "GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com",
		"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com")
	ssh := c.SSHCommandLine()
	if c.Password != "" {
		ssh = "sshpass -p " + ShellQuote(c.Password) + " " + ssh
		env = append(env, "GIT_SSH_VARIANT=ssh")
	}
	cmd.Env = append(append(env, "GIT_SSH_COMMAND="+ssh), c.Env...)
	return cmd
}

// GitURL is ssh://LOGIN@HOST:PORT/PATH for target.
func (c *Client) GitURL(target, path string) string {
	return "ssh://" + c.Login(target) + "@" + c.Host + ":" + strconv.Itoa(c.Port) + path
}

// WithPassword returns a copy of c that logs in with a password (via sshpass).
func (c *Client) WithPassword(pw string) *Client {
	n := *c
	n.Key, n.Password = "", pw
	return &n
}

// WithOpts returns a copy of c with -o options that override the defaults.
func (c *Client) WithOpts(opts ...string) *Client {
	n := *c
	n.Opts = append(append([]string{}, c.Opts...), opts...)
	return &n
}

// WithKey returns a copy of c that uses another key.
func (c *Client) WithKey(key string) *Client {
	n := *c
	n.Key = key
	return &n
}

// WithUser returns a copy of c that logs in as another user.
func (c *Client) WithUser(user string) *Client {
	n := *c
	n.User = user
	return &n
}

// Direct returns a client for sshd s itself (no gate), as login with key:
// for comparing the gate's behaviour with OpenSSH's.
func Direct(t testing.TB, s *SSHD, login, key string) *Client {
	t.Helper()
	kh := t.TempDir() + "/known_hosts"
	if _, err := WriteKnownHosts(kh, s.Host, s.Port, s.HostKeyPub); err != nil {
		t.Fatal(err)
	}
	return &Client{Host: s.Host, Port: s.Port, User: login, Key: key, KnownHosts: kh, FixedLogin: login}
}

// SSHWithConfig prepares `ssh -F CONFIG ARGS...` with the client's key and
// known_hosts but no port: host, port and user come from the config file.
func (c *Client) SSHWithConfig(config string, args ...string) *exec.Cmd {
	opts := c.Options()
	opts[1] = config // replaces "-F none"
	return c.command("ssh", append(opts, args...))
}
