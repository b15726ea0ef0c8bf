// Package cli is the sshgate command line: `serve` and the admin commands
// that edit the store (users, keys, environments, targets, grants). Main runs
// in-process so tests drive it with their own stdin, stdout and stderr.
//
// Exit codes: 0 success; 1 a condition of the data (not found, already
// exists, a host that cannot be scanned, an internal failure); 2 a bad
// argument, flag or command, always with a message naming the bad value.
// User mistakes print one line, never a stack or a raw error chain.
//
// Changes go straight to the store; a running gate reads them at its next
// connection, so nothing here signals the gate.
//
// Must not import: agent store/storetest
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/app"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/sdnotify"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/store/open"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// exitError carries the exit code and the one line to print.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usagef is a bad argument: exit 2, with a usage hint.
func usagef(format string, args ...any) error {
	return &exitError{code: ExitUsage, msg: fmt.Sprintf(format, args...)}
}

// failf is a failure: exit 1.
func failf(format string, args ...any) error {
	return &exitError{code: ExitFail, msg: fmt.Sprintf(format, args...)}
}

// fileErr is a file named on the command line that cannot be read: a
// condition of the machine (exit 1, no usage hint), not a bad argument.
func fileErr(what string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return failf("%s: %v", what, err)
}

// isFileErr reports an error reading a file (missing, unreadable), as
// opposed to one about its content.
func isFileErr(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)
}

// storeErr turns a store error into its one-line message, exit 1:
// `user "bob": not found` becomes `user "bob" not found`.
func storeErr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, sentinel := range []error{store.ErrNotFound, store.ErrExists} {
		if errors.Is(err, sentinel) {
			if m, ok := strings.CutSuffix(msg, ": "+sentinel.Error()); ok {
				msg = m + " " + sentinel.Error()
			}
		}
	}
	return failf("%s", msg)
}

// serveFunc is app.Serve; tests replace it.
var serveFunc = app.Serve

// Main runs the command line and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	root := e.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if e.st != nil {
		e.st.Close()
	}
	if err == nil {
		return ExitOK
	}
	var xe *exitError
	if !errors.As(err, &xe) {
		// Errors cobra makes itself: unknown commands, bad arguments.
		xe = &exitError{code: ExitUsage, msg: err.Error()}
	}
	fmt.Fprintf(stderr, "sshgate: %s\n", xe.msg)
	if xe.code == ExitUsage {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return xe.code
}

// env is one run of the command line.
type env struct {
	stdin           io.Reader
	stdout, stderr  io.Writer
	data            string
	config          string // --config: the YAML file serve runs with and the admin commands read the store section of
	st              store.Store
	heartbeatExpiry time.Duration // store.heartbeat_expiry of the configuration store() loaded
}

func (e *env) dataDir() (*datadir.Dir, error) {
	d, err := datadir.Open(datadir.Resolve(e.data))
	if err != nil {
		return nil, failf("%v", err)
	}
	if err := e.useKeys(d, e.configFile()); err != nil {
		return nil, err
	}
	return d, nil
}

// useKeys points d at the key files the configuration (file, if any) sets
// outside the data directory (keys.*), so the admin commands use the same
// keys as serve and never generate one there.
func (e *env) useKeys(d *datadir.Dir, file string) error {
	if file == "" {
		return nil
	}
	cfg, err := config.Load(file)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return usagef("invalid configuration:\n%v", err)
	}
	if err := app.UseKeys(cfg, d); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// configFile is --config, else $SSHGATE_CONFIG.
func (e *env) configFile() string {
	if e.config != "" {
		return e.config
	}
	return os.Getenv(ConfigEnvVar)
}

// ConfigEnvVar names the environment variable that sets the default --config.
const ConfigEnvVar = "SSHGATE_CONFIG"

// store opens the configured store (by default the SQLite file of the data
// directory) once per run.
func (e *env) store() (store.Store, error) {
	if e.st != nil {
		return e.st, nil
	}
	d, err := e.dataDir()
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(e.configFile())
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return nil, usagef("invalid configuration:\n%v", err)
	}
	e.heartbeatExpiry = cfg.Store.HeartbeatExpiry.D()
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	st, err := open.Store(context.Background(), cfg.Store, d.DBPath(), log)
	if err != nil {
		return nil, failf("%v", err)
	}
	e.st = st
	return st, nil
}

// run wraps a command body: errors it returns that are not already exit
// errors are failures (exit 1), never mistaken for usage errors.
func run(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := f(cmd, args)
		if err == nil {
			return nil
		}
		var xe *exitError
		if errors.As(err, &xe) {
			return err
		}
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) {
			return storeErr(err)
		}
		return failf("%v", err)
	}
}

// args checks the positional arguments: the names of the required ones,
// then how many optional ones may follow.
func argsOf(required []string, optional int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < len(required) {
			return usagef("%s: missing %s", name(cmd), strings.Join(required[len(args):], " "))
		}
		if len(args) > len(required)+optional {
			return usagef("%s: unexpected argument %q", name(cmd), args[len(required)+optional])
		}
		return nil
	}
}

// group is the body of a command that only holds subcommands.
func group(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		if !cmd.HasParent() {
			return usagef("missing command")
		}
		return usagef("%s: missing command", name(cmd))
	}
	return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
}

// name is the command path without the program name: "user add".
func name(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

func (e *env) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "sshgate",
		Short:         "An SSH gateway in front of containers and hosts",
		SilenceErrors: true,
		SilenceUsage:  true,
		// Args left nil: cobra then reports an unknown command before
		// complaining about its flags (`sshgate frob --x`).
		RunE: group,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	setVersionFlag(root)
	root.PersistentFlags().StringVar(&e.data, "data", "", "data directory (default $"+datadir.EnvVar+" or "+datadir.Default+")")
	root.PersistentFlags().StringVar(&e.config, "config", "", "YAML configuration file (default $"+ConfigEnvVar+"); the admin commands use its store section")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if !cmd.HasParent() {
			return usagef("%v", err)
		}
		return usagef("%s: %v", name(cmd), err)
	})
	root.AddCommand(
		e.serveCmd(),
		e.checkConfigCmd(),
		e.initCmd(),
		e.backupCmd(),
		e.restoreCmd(),
		e.userCmd(),
		e.keyCmd(),
		e.envCmd(),
		e.targetCmd(),
		e.grantCmd(),
		e.revokeCmd(),
		e.gateKeyCmd(),
		e.caCmd(),
		e.versionCmd(),
		e.bansCmd(),     // bans.go
		e.mfaCmd(),      // totp.go
		e.replayCmd(),   // replay.go
		e.sessionsCmd(), // sessions.go
		e.gatesCmd(),    // gates.go
		e.ssoCmd(),      // sso.go
	)
	e.addMenuCommands(root) // menu.go: target alias|primary|describe, user default-target|show, env group
	return root
}

func (e *env) serveCmd() *cobra.Command {
	var listen, metricsListen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gate",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// The first signal starts the graceful drain; a second one
			// gets the default action and ends the process at once.
			go func() {
				<-ctx.Done()
				stop()
				notify(e.stderr, sdnotify.Stopping)
			}()
			err := serveFunc(ctx, app.Options{
				DataDir:    datadir.Resolve(e.data),
				Listen:     listen,
				ConfigFile: e.configFile(),
				Log:        e.stderr,
				// systemd (Type=notify) learns the gate is up once it accepts.
				Ready: func(addr net.Addr) { notify(e.stderr, sdnotify.Ready+"\nSTATUS=listening on "+addr.String()) },

				MetricsListen: metricsListen,
			})
			var ce *app.ConfigError
			if errors.As(err, &ce) {
				return &exitError{code: ExitUsage, msg: ce.Error()}
			}
			return err
		}),
	}
	cmd.Flags().StringVar(&listen, "listen", "", "listen address, e.g. :2222 (overrides the config file)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "serve /metrics, /healthz and /readyz on this address, e.g. 127.0.0.1:9100 (overrides metrics.listen)")
	return cmd
}

// notify tells systemd the gate's state when it runs the gate; a socket
// that cannot be reached is said once on stderr.
func notify(stderr io.Writer, state string) {
	if _, err := sdnotify.Notify(state); err != nil {
		fmt.Fprintf(stderr, "sshgate: %v\n", err)
	}
}

func (e *env) gateKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gate-key",
		Short: "Print the gate's public key as an authorized_keys line (generated on first use)",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			d, err := e.dataDir()
			if err != nil {
				return err
			}
			s, err := d.GateKey()
			if err != nil {
				return err
			}
			line := strings.TrimSpace(string(marshalAuthorizedKey(s.PublicKey())))
			fmt.Fprintf(e.stdout, "%s sshgate-gate-key\n", line)
			return nil
		}),
	}
}

// removeCommand is `KIND remove NAME`: the name is checked, removed with
// del, and the removal reported.
func (e *env) removeCommand(kind, short string, del func(ctx context.Context, st store.Store, name string) error) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: short,
		Args:  argsOf([]string{"NAME"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName(kind, args[0]); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := del(cmd.Context(), st, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "removed %s %s\n", kind, args[0])
			return nil
		}),
	}
}
