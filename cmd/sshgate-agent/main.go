// Command sshgate-agent is the SSH server sshgate runs inside a container
// (or an operator runs on a host): one static binary, no shell, scp or
// sftp-server needed in the image. See internal/agent.
//
//	sshgate-agent (--stdio | --mux | --dial ADDR | --dial-each ADDR | --listen ADDR) --host-key FILE
//	    --authorized-keys FILE [--shell PATH] [--env KEY=VALUE ...] [--reap]
//	sshgate-agent --install DIR
//	sshgate-agent --hold
//
// --install copies the agent into DIR with the files its environment names
// (SSHGATE_FILE_<name>=<octal mode>:<base64>): the init container of a
// Kubernetes pod, whose image is the agent alone (FROM scratch). It runs
// as the postStart hook of the pod's first container, whose process is
// --hold: it does nothing until SIGTERM or SIGINT, then exits 0.
//
// Exit status: 2 for bad flags or unusable files they name (one line on
// stderr, naming the value); 1 when --listen cannot listen or --dial gives
// up (after 10 s of retries); 0 otherwise: --stdio and --dial exit when
// their one connection ends, --mux when its stream ends, --listen on
// SIGTERM or SIGINT. On SIGTERM
// running sessions get SIGHUP, then SIGKILL 0.5 s later.
//
// Sessions run as the agent's own user, with the agent's environment (the
// container's), HOME (from $HOME, else /etc/passwd, else "/"), USER,
// LOGNAME, SHELL, TERM and SSH_TTY with a PTY, the client's TERM, LANG and
// LC_*, and last the --env values. The working directory is HOME when the
// user may enter it, else "/". The authorized keys file is re-read for
// every connection.
//
// As PID 1 (or with --reap) the agent becomes the reaper of orphans: it
// waits for every child and hands exit statuses of its own sessions to
// them.
//
// Must not import: store/... target/... obs broker app auth/... sshd/... relay policy route/... webhook config cli audit/... live ca datadir
// Must not import: github.com/docker/... github.com/moby/... github.com/prometheus/... k8s.io/... modernc.org/... github.com/jackc/...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/agent"
)

const usage = `usage: sshgate-agent (--stdio | --mux | --dial ADDR | --dial-each ADDR | --listen ADDR) --host-key FILE --authorized-keys FILE [--shell PATH] [--env KEY=VALUE ...] [--reap]

  --stdio              serve one SSH connection on stdin/stdout
  --mux                serve the SSH connections the gate multiplexes on stdin/stdout (a keeper pod's exec stream)
  --dial ADDR          connect to unix:/path, tcp:host:port or host:port and serve that connection
  --dial-each ADDR     keep one idle connection dialed to ADDR, serve each as the gate takes it, until SIGTERM
  --listen ADDR        accept TCP connections on host:port until SIGTERM
  --host-key FILE      OpenSSH ed25519 private key presented to clients
  --authorized-keys F  authorized_keys lines (keys, and cert-authority lines)
  --shell PATH         shell for sessions (default $SHELL, /bin/bash, /bin/sh, /bin/ash, /busybox/sh)
  --env KEY=VALUE      set in every session (repeatable)
  --reap               reap orphaned children (always on when running as PID 1)

usage: sshgate-agent --install DIR   copy the agent and $SSHGATE_FILE_<name>=MODE:BASE64 files into DIR
usage: sshgate-agent --hold          do nothing until SIGTERM or SIGINT (the installer container's process)
`

// exitUsage is the status for bad flags and bad files they name.
const exitUsage = 2

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type config struct {
	stdio      bool
	mux        bool
	dial       string
	listen     string
	dialEach   string
	hostKey    string
	authKeys   string
	shell      string
	env        []string
	reap       bool
	modeCount  int
	hostSigner ssh.Signer
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("sshgate-agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&c.stdio, "stdio", false, "")
	fs.BoolVar(&c.mux, "mux", false, "")
	fs.StringVar(&c.dial, "dial", "", "")
	fs.StringVar(&c.listen, "listen", "", "")
	fs.StringVar(&c.dialEach, "dial-each", "", "")
	fs.StringVar(&c.hostKey, "host-key", "", "")
	fs.StringVar(&c.authKeys, "authorized-keys", "", "")
	fs.StringVar(&c.shell, "shell", "", "")
	fs.BoolVar(&c.reap, "reap", false, "")
	fs.Func("env", "", func(v string) error {
		k, _, ok := strings.Cut(v, "=")
		if !ok || k == "" || strings.ContainsRune(v, 0) {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		c.env = append(c.env, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if c.stdio {
		c.modeCount++
	}
	if c.mux {
		c.modeCount++
	}
	if c.dial != "" {
		c.modeCount++
	}
	if c.listen != "" {
		c.modeCount++
	}
	if c.dialEach != "" {
		c.modeCount++
	}
	if c.modeCount != 1 {
		return nil, usageError{"give exactly one of --stdio, --mux, --dial ADDR, --dial-each ADDR, --listen ADDR"}
	}
	for _, a := range []string{c.dial, c.dialEach} {
		if a == "" {
			continue
		}
		if _, _, err := dialTarget(a); err != nil {
			return nil, usageError{err.Error()}
		}
	}
	if c.listen != "" {
		if _, _, err := net.SplitHostPort(c.listen); err != nil {
			return nil, usageError{fmt.Sprintf("--listen %q: want host:port", c.listen)}
		}
	}
	if c.hostKey == "" {
		return nil, usageError{"--host-key FILE is required"}
	}
	if c.authKeys == "" {
		return nil, usageError{"--authorized-keys FILE is required"}
	}
	data, err := os.ReadFile(c.hostKey)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--host-key %q: %v", c.hostKey, err)}
	}
	c.hostSigner, err = ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--host-key %q: %v", c.hostKey, err)}
	}
	if t := c.hostSigner.PublicKey().Type(); t != ssh.KeyAlgoED25519 {
		return nil, usageError{fmt.Sprintf("--host-key %q: key type %s, want ssh-ed25519", c.hostKey, t)}
	}
	if _, err := agent.LoadAuthorizedKeys(c.authKeys); err != nil {
		return nil, usageError{fmt.Sprintf("--authorized-keys %q: %v", c.authKeys, err)}
	}
	if c.shell != "" {
		fi, err := os.Stat(c.shell)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return nil, usageError{fmt.Sprintf("--shell %q: not an executable file", c.shell)}
		}
	}
	return c, nil
}

// dialTarget parses unix:/path, tcp:host:port or host:port.
func dialTarget(addr string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		p := strings.TrimPrefix(addr, "unix:")
		if p == "" {
			return "", "", fmt.Errorf("--dial %q: empty socket path", addr)
		}
		return "unix", p, nil
	case strings.HasPrefix(addr, "tcp:"):
		addr = strings.TrimPrefix(addr, "tcp:")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("--dial %q: want unix:/path, tcp:host:port or host:port", addr)
	}
	return "tcp", addr, nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 2 && (args[0] == "--install" || args[0] == "-install") {
		if err := install(args[1], os.Environ()); err != nil {
			fmt.Fprintf(os.Stderr, "sshgate-agent: %v\n", err)
			return exitUsage
		}
		return 0
	}
	if len(args) == 1 && (args[0] == "--hold" || args[0] == "-hold") {
		hold()
		return 0
	}
	c, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(os.Stdout, usage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sshgate-agent: %v\n", err)
		return exitUsage
	}
	// A Go handler (not SIG_IGN, which children would inherit) so that a
	// write to a closed stdout is an error rather than death.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	agent.TuneGC()
	// Logs go to stderr, one line per connection and per problem. In
	// --stdio mode only warnings: stderr may share a transport with the
	// SSH stream there.
	level := slog.LevelInfo
	if c.stdio || c.mux {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srv, err := agent.New(agent.Options{
		HostKey:            c.hostSigner,
		AuthorizedKeysFile: c.authKeys,
		Shell:              c.shell,
		Env:                c.env,
		Reap:               c.reap || os.Getpid() == 1,
		Logger:             log,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "sshgate-agent: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	switch {
	case c.listen != "":
		l, err := net.Listen("tcp", c.listen)
		if err != nil {
			fmt.Fprintf(os.Stderr, "sshgate-agent: listen %s: %v\n", c.listen, err)
			return 1
		}
		log.Info("listening", "addr", l.Addr().String())
		context.AfterFunc(ctx, func() { srv.Shutdown(500 * time.Millisecond) })
		if err := srv.ServeListener(ctx, l); err != nil {
			fmt.Fprintf(os.Stderr, "sshgate-agent: %v\n", err)
			return 1
		}
		return 0
	case c.dialEach != "":
		network, address, _ := dialTarget(c.dialEach)
		context.AfterFunc(ctx, func() { srv.Shutdown(500 * time.Millisecond) })
		dialEach(ctx, srv, network, address, log)
		return 0
	case c.mux:
		return serveMux(ctx, srv, &stdioConn{r: os.Stdin, w: os.Stdout}, log)
	case c.dial != "":
		network, address, _ := dialTarget(c.dial)
		conn, err := dialRetry(ctx, network, address, 10*time.Second)
		if err != nil {
			fmt.Fprintf(os.Stderr, "sshgate-agent: dial %s: %v\n", c.dial, err)
			return 1
		}
		return serveOne(ctx, srv, conn, log)
	default:
		return serveOne(ctx, srv, &stdioConn{r: os.Stdin, w: os.Stdout}, log)
	}
}

// serveOne serves one connection; SIGTERM ends it.
func serveOne(ctx context.Context, srv *agent.Server, conn net.Conn, log *slog.Logger) int {
	stopOnSignal := context.AfterFunc(ctx, func() {
		srv.Shutdown(500 * time.Millisecond)
		conn.Close()
	})
	defer stopOnSignal()
	if err := srv.Serve(conn); err != nil && ctx.Err() == nil {
		log.Info("connection ended", "err", err)
	}
	return 0
}

// dialEach keeps one idle connection dialed to address. It serves a
// connection only once the gate speaks on it (so an idle spare has no
// handshake deadline), and dials the next spare at that moment: each gate
// connection costs a dial, never an exec. A failed dial is retried every
// 100 ms up to 1 s apart until ctx ends (SIGTERM, or the container's end).
func dialEach(ctx context.Context, srv *agent.Server, network, address string, log *slog.Logger) {
	var d net.Dialer
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := d.DialContext(ctx, network, address)
		if err != nil {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
			wait = min(2*wait, time.Second)
			continue
		}
		wait = 100 * time.Millisecond
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		var first [1]byte
		n, err := conn.Read(first[:])
		stop()
		if err != nil || n == 0 {
			conn.Close() // the gate closed the spare: dial again
			continue
		}
		go func() {
			var err error
			if uc, ok := conn.(*net.UnixConn); ok {
				err = srv.ServeUnix(uc, first[:n])
			} else {
				err = srv.Serve(&primedConn{Conn: conn, first: first[:n]})
			}
			if err != nil && ctx.Err() == nil {
				log.Info("connection ended", "err", err)
			}
		}()
	}
}

// primedConn replays the bytes read before Serve began.
type primedConn struct {
	net.Conn
	first []byte
}

func (c *primedConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// dialRetry dials until it works or the time is up: the gate's socket may
// not exist yet when the container starts.
func dialRetry(ctx context.Context, network, address string, limit time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, network, address)
		if err == nil {
			return conn, nil
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// stdioConn is a net.Conn over stdin and stdout.
type stdioConn struct {
	r, w *os.File
}

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdio" }

func (c *stdioConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *stdioConn) Close() error {
	err := c.w.Close()
	if err2 := c.r.Close(); err == nil {
		err = err2
	}
	return err
}
func (c *stdioConn) LocalAddr() net.Addr              { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr             { return stdioAddr{} }
func (c *stdioConn) SetDeadline(time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }
