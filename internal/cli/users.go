package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/auth/passwd"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/store"
)

func (e *env) userCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage gate users", Args: cobra.ArbitraryArgs, RunE: group,
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true}}
	var pwStdin, clear bool
	var minLen int

	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user (with a password read from stdin if --password-stdin)",
		Args:  argsOf([]string{"NAME"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkNewUserName(name); err != nil {
				return err
			}
			var hash string
			if pwStdin {
				pw, err := readPassword(e.stdin, minLen)
				if err != nil {
					return err
				}
				if hash, err = passwd.Hash(pw); err != nil {
					return err
				}
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.AddUser(cmd.Context(), gate.User{Name: name, PasswordHash: hash}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "added user %s\n", name)
			return nil
		}),
	}
	add.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from the first line of stdin")
	add.Flags().IntVar(&minLen, "min-password-length", DefaultMinPasswordLength, "refuse shorter passwords (characters)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List users",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			st, err := e.store()
			if err != nil {
				return err
			}
			us, err := st.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			t := newTable(e.stdout, "NAME", "PASSWORD", "KEYS")
			for _, u := range us {
				ks, err := st.ListKeys(cmd.Context(), u.Name)
				if err != nil {
					return err
				}
				pw := "no"
				if u.PasswordHash != "" {
					pw = "yes"
				}
				t.row(u.Name, pw, strconv.Itoa(len(ks)))
			}
			return t.flush()
		}),
	}

	remove := e.userRemoveCmd()

	pw := &cobra.Command{
		Use:   "passwd NAME (--password-stdin | --clear)",
		Short: "Set, replace or remove a user's password",
		Args:  argsOf([]string{"NAME"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName("user", name); err != nil {
				return err
			}
			if pwStdin == clear {
				return usagef("user passwd %s: give exactly one of --password-stdin and --clear", name)
			}
			var hash string
			if pwStdin {
				p, err := readPassword(e.stdin, minLen)
				if err != nil {
					return err
				}
				if hash, err = passwd.Hash(p); err != nil {
					return err
				}
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.SetPassword(cmd.Context(), name, hash); err != nil {
				return err
			}
			if clear {
				fmt.Fprintf(e.stdout, "removed the password of %s\n", name)
			} else {
				fmt.Fprintf(e.stdout, "set the password of %s\n", name)
			}
			return nil
		}),
	}
	pw.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the new password from the first line of stdin")
	pw.Flags().IntVar(&minLen, "min-password-length", DefaultMinPasswordLength, "refuse shorter passwords (characters)")
	pw.Flags().BoolVar(&clear, "clear", false, "remove the password (key login only)")

	cmd.AddCommand(add, list, remove, pw, e.userTOTPCmd())
	return cmd
}

// parsedKey is one key line from a file.
type parsedKey struct {
	line int
	key  gate.Key
	typ  string
}

// readKeys parses every key in r (skipping blank and # lines); a bad line is
// named by file and line number.
func readKeys(r io.Reader, name string) ([]parsedKey, error) {
	var out []parsedKey
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "-----BEGIN") {
			return nil, usagef("%s line %d: this is a private key; give the public key (the .pub file)", name, n)
		}
		k, comment, err := sshkeys.ParseAuthorizedKey(line)
		if err != nil {
			return nil, usagef("%s line %d: %v", name, n, err)
		}
		out = append(out, parsedKey{line: n, typ: k.Type(), key: gate.Key{
			Fingerprint:   sshkeys.Fingerprint(k),
			AuthorizedKey: sshkeys.AuthorizedLine(k),
			Comment:       comment,
		}})
	}
	if err := sc.Err(); err != nil {
		return nil, usagef("%s: %v", name, err)
	}
	if len(out) == 0 {
		return nil, usagef("%s: no keys found", name)
	}
	return out, nil
}

func (e *env) keyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage users' public keys", Args: cobra.ArbitraryArgs, RunE: group,
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true}}

	add := &cobra.Command{
		Use:   "add USER FILE|-",
		Short: "Add the public keys in FILE (or stdin) to USER",
		Args:  argsOf([]string{"USER", "FILE"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			user, file := args[0], args[1]
			if err := checkName("user", user); err != nil {
				return err
			}
			var r io.Reader
			name := file
			if file == "-" {
				r, name = e.stdin, "stdin"
			} else {
				f, err := os.Open(file)
				if err != nil {
					var pe *fs.PathError
					if errors.As(err, &pe) {
						err = pe.Err
					}
					return fileErr(fmt.Sprintf("key file %q", file), err)
				}
				defer f.Close()
				r = f
			}
			keys, err := readKeys(r, name)
			if err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if _, err := st.GetUser(ctx, user); err != nil {
				return err
			}
			var failed error
			for _, pk := range keys {
				k := pk.key
				k.User = user
				if err := st.AddKey(ctx, k); err != nil {
					if !errors.Is(err, store.ErrExists) {
						return err
					}
					failed = failf("%s line %d: key %s is already a key of %s", name, pk.line, k.Fingerprint, user)
					fmt.Fprintf(e.stderr, "sshgate: %s\n", failed)
					continue
				}
				fmt.Fprintf(e.stdout, "added key %s %s %s\n", k.Fingerprint, pk.typ, orDash(k.Comment))
			}
			if failed != nil {
				return failf("some keys were not added")
			}
			return nil
		}),
	}

	list := &cobra.Command{
		Use:   "list USER",
		Short: "List a user's keys",
		Args:  argsOf([]string{"USER"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("user", args[0]); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if _, err := st.GetUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			ks, err := st.ListKeys(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			t := newTable(e.stdout, "FINGERPRINT", "TYPE", "COMMENT")
			for _, k := range ks {
				typ, _, _ := strings.Cut(k.AuthorizedKey, " ")
				t.row(k.Fingerprint, typ, orDash(k.Comment))
			}
			return t.flush()
		}),
	}

	var keep bool
	remove := &cobra.Command{
		Use:   "remove USER FINGERPRINT [--keep-sessions]",
		Short: "Remove a user's key, and end the live sessions that logged in with it",
		Args:  argsOf([]string{"USER", "FINGERPRINT"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			user, fp := args[0], args[1]
			if err := checkName("user", user); err != nil {
				return err
			}
			if err := checkFingerprint(fp); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			live, err := st.ListLiveSessions(cmd.Context())
			if err != nil {
				return err
			}
			var ids []string
			for _, l := range live {
				if l.User == user && l.KeyFP == fp {
					ids = append(ids, l.ID)
				}
			}
			if err := st.RemoveKey(cmd.Context(), user, fp); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "removed key %s of %s\n", fp, user)
			switch {
			case len(ids) == 0:
				return nil
			case keep:
				fmt.Fprintf(e.stdout, "%d live sessions that logged in with it keep running (--keep-sessions); `sshgate sessions kill ID` ends one\n", len(ids))
				return nil
			}
			return e.endSessions(cmd.Context(), st, ids, "that logged in with it")
		}),
	}
	remove.Flags().BoolVar(&keep, "keep-sessions", false, "leave the live sessions that logged in with the key running")
	cmd.AddCommand(add, list, remove)
	return cmd
}

func (e *env) envCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "env", Short: "Manage environments (groups of targets)", Args: cobra.ArbitraryArgs, RunE: group,
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true}}

	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add an environment",
		Args:  argsOf([]string{"NAME"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("env", args[0]); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.AddEnv(cmd.Context(), gate.Env{Name: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "added env %s\n", args[0])
			return nil
		}),
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List environments",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			st, err := e.store()
			if err != nil {
				return err
			}
			es, err := st.ListEnvs(cmd.Context())
			if err != nil {
				return err
			}
			ts, err := st.ListTargets(cmd.Context())
			if err != nil {
				return err
			}
			n := map[string]int{}
			for _, t := range ts {
				n[t.Env]++
			}
			t := newTable(e.stdout, "NAME", "TARGETS")
			for _, env := range es {
				t.row(env.Name, strconv.Itoa(n[env.Name]))
			}
			return t.flush()
		}),
	}

	remove := e.removeCommand("env", "Remove an environment (refused while targets use it)",
		func(ctx context.Context, st store.Store, name string) error {
			err := st.RemoveEnv(ctx, name)
			if errors.Is(err, store.ErrExists) {
				return failf("env %q is used by targets %s: remove them first", name, strings.Join(targetsIn(ctx, st, name), ", "))
			}
			return err
		})
	cmd.AddCommand(add, list, remove)
	return cmd
}

func targetsIn(ctx context.Context, st store.Store, env string) []string {
	ts, _ := st.ListTargets(ctx)
	var out []string
	for _, t := range ts {
		if t.Env == env {
			out = append(out, t.Name)
		}
	}
	return out
}

func (e *env) grantCmd() *cobra.Command {
	var envName, target, login string
	var forwarding bool
	var forwardTo []string
	var c gate.Controls
	cmd := &cobra.Command{
		Use: "grant USER (--env ENV | --target NAME) [--login USER] [--forwarding [--forward-to HOST:PORT|/SOCKET]...] [--no-shell] [--no-exec] [--no-sftp] [--no-scp] [--no-rsync]\n" +
			"  [--upload-only|--download-only] [--agent-forwarding] [--watch] [--command CMD] [--max-session D] [--idle-timeout D]",
		Short: "Let a user reach a target or every target of an environment",
		Args:  argsOf([]string{"USER"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			user := args[0]
			if err := checkName("user", user); err != nil {
				return err
			}
			if (envName == "") == (target == "") {
				return usagef("grant %s: give exactly one of --env and --target", user)
			}
			if cmd.Flags().Changed("command") && (c.Command == "" || strings.ContainsAny(c.Command, "\x00\n\r")) {
				return usagef("invalid --command %q: want one command line", c.Command)
			}
			if c.UploadOnly && c.DownloadOnly {
				return usagef("grant %s: --upload-only and --download-only exclude each other", user)
			}
			for flag, d := range map[string]time.Duration{"--max-session": c.MaxSession, "--idle-timeout": c.IdleTimeout} {
				if d < 0 || (d > 0 && d < time.Second) {
					return usagef("invalid %s %s: want a duration of at least 1s (0 for the gate's default)", flag, d)
				}
			}
			to, err := forwardToFlags(forwardTo, forwarding)
			if err != nil {
				return err
			}
			g := gate.Grant{User: user, Env: envName, Target: target, Login: login, Forwarding: forwarding, ForwardTo: to, Controls: c}
			scope := "env " + envName
			if envName != "" {
				if err := checkName("env", envName); err != nil {
					return err
				}
			} else {
				if err := checkName("target", target); err != nil {
					return err
				}
				scope = "target " + target
			}
			if cmd.Flags().Changed("login") {
				if err := checkLogin("--login", login); err != nil {
					return err
				}
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			g, err = st.AddGrant(cmd.Context(), g)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "added grant %d: %s -> %s\n", g.ID, user, scope)
			return nil
		}),
	}
	cmd.Flags().StringVar(&envName, "env", "", "grant every target of this environment")
	cmd.Flags().StringVar(&target, "target", "", "grant this target")
	cmd.Flags().StringVar(&login, "login", "", "log in as this user on the target (default: the target's login)")
	cmd.Flags().BoolVar(&forwarding, "forwarding", false, "allow port forwarding")
	cmd.Flags().StringArrayVar(&forwardTo, "forward-to", nil, "with --forwarding: let local forwards (ssh -L) reach only HOST:PORT (HOST a name, an IP or a CIDR prefix; PORT a number, LO-HI or *) or a unix socket /PATH; repeatable (default: any host and port, no socket)")
	cmd.Flags().BoolVar(&c.NoShell, "no-shell", false, "refuse shells (ssh without a command)")
	cmd.Flags().BoolVar(&c.NoExec, "no-exec", false, "refuse commands other than legacy scp and rsync (each has its own flag)")
	cmd.Flags().BoolVar(&c.NoSFTP, "no-sftp", false, "refuse the sftp subsystem (sftp, and scp of OpenSSH 9 without -O)")
	cmd.Flags().BoolVar(&c.NoSCP, "no-scp", false, "refuse legacy scp (scp -O)")
	cmd.Flags().BoolVar(&c.NoRsync, "no-rsync", false, "refuse rsync")
	cmd.Flags().BoolVar(&c.UploadOnly, "upload-only", false, "file transfers only toward the target (SFTP, scp, FISH, rsync)")
	cmd.Flags().BoolVar(&c.DownloadOnly, "download-only", false, "file transfers only from the target (SFTP, scp, FISH, rsync)")
	cmd.Flags().BoolVar(&c.AgentForwarding, "agent-forwarding", false, "allow agent forwarding (ssh -A) to the target")
	cmd.Flags().BoolVar(&c.Watch, "watch", false, "allow watching other users' live PTY sessions on the target (ssh USER@GATE watch ID)")
	cmd.Flags().StringVar(&c.Command, "command", "", "run this command instead of whatever the session asks for")
	cmd.Flags().DurationVar(&c.MaxSession, "max-session", 0, "end sessions after this long (default: sessions.max_session)")
	cmd.Flags().DurationVar(&c.IdleTimeout, "idle-timeout", 0, "end sessions after this long without input (default: sessions.idle_timeout)")

	list := &cobra.Command{
		Use:   "list [USER]",
		Short: "List grants, of one user or all",
		Args:  argsOf(nil, 1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			st, err := e.store()
			if err != nil {
				return err
			}
			user := ""
			if len(args) == 1 {
				user = args[0]
				if err := checkName("user", user); err != nil {
					return err
				}
				if _, err := st.GetUser(cmd.Context(), user); err != nil {
					return err
				}
			}
			gs, err := st.ListGrants(cmd.Context(), user)
			if err != nil {
				return err
			}
			t := newTable(e.stdout, "ID", "USER", "SCOPE", "LOGIN", "FORWARDING", "CONTROLS")
			for _, g := range gs {
				scope := "target:" + g.Target
				if g.Env != "" {
					scope = "env:" + g.Env
				}
				fw := "no"
				switch {
				case g.Forwarding && len(g.ForwardTo) > 0:
					fw = strings.Join(g.ForwardTo, ",")
				case g.Forwarding:
					fw = "yes"
				}
				t.row(strconv.FormatInt(g.ID, 10), g.User, scope, orDash(g.Login), fw, orDash(controlsText(g.Controls)))
			}
			return t.flush()
		}),
	}

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Remove a grant",
		Args:  argsOf([]string{"ID"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return usagef("invalid grant ID %q: want a number as grant list prints it", args[0])
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.RemoveGrant(cmd.Context(), id); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "revoked grant %d\n", id)
			return nil
		}),
	}
	cmd.AddCommand(list, revoke)
	return cmd
}

// forwardToFlags checks the --forward-to values and returns them in their
// canonical spelling, without duplicates.
func forwardToFlags(specs []string, forwarding bool) ([]string, error) {
	if len(specs) > 0 && !forwarding {
		return nil, usagef("--forward-to %q needs --forwarding", specs[0])
	}
	var out []string
	for _, s := range specs {
		d, err := policy.ParseDest(s)
		if err != nil {
			return nil, usagef("invalid --forward-to %q: %v", s, err)
		}
		if c := d.String(); !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// revokeCmd is `sshgate revoke USER (--env ENV | --target NAME)`: the
// mirror of `grant USER ...` for scripts that do not know grant IDs. It
// removes every grant of USER on that env or target, whatever the login.
func (e *env) revokeCmd() *cobra.Command {
	var envName, target string
	cmd := &cobra.Command{
		Use:   "revoke USER (--env ENV | --target NAME)",
		Short: "Remove a user's grants on an environment or a target (see also: grant revoke ID)",
		Args:  argsOf([]string{"USER"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			user := args[0]
			if err := checkName("user", user); err != nil {
				return err
			}
			if (envName == "") == (target == "") {
				return usagef("revoke %s: give exactly one of --env and --target", user)
			}
			scope := "target " + target
			if envName != "" {
				if err := checkName("env", envName); err != nil {
					return err
				}
				scope = "env " + envName
			} else if err := checkName("target", target); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if _, err := st.GetUser(ctx, user); err != nil {
				return err
			}
			gs, err := st.ListGrants(ctx, user)
			if err != nil {
				return err
			}
			n := 0
			for _, g := range gs {
				if g.Env != envName || g.Target != target {
					continue
				}
				if err := st.RemoveGrant(ctx, g.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				fmt.Fprintf(e.stdout, "revoked grant %d: %s -> %s\n", g.ID, user, scope)
				n++
			}
			if n == 0 {
				return failf("no grant of %s on %s", user, scope)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&envName, "env", "", "revoke the grants on this environment")
	cmd.Flags().StringVar(&target, "target", "", "revoke the grants on this target")
	return cmd
}

// controlsText shows a grant's controls as its flags, "" for none; a
// forced command is shown as "command" (it is audit material, not a column).
func controlsText(c gate.Controls) string {
	var out []string
	for _, f := range []struct {
		on   bool
		name string
	}{{c.NoShell, "no-shell"}, {c.NoExec, "no-exec"}, {c.NoSFTP, "no-sftp"}, {c.NoSCP, "no-scp"}, {c.NoRsync, "no-rsync"},
		{c.UploadOnly, "upload-only"}, {c.DownloadOnly, "download-only"}, {c.AgentForwarding, "agent-forwarding"}, {c.Watch, "watch"},
		{c.Command != "", "command"}} {
		if f.on {
			out = append(out, f.name)
		}
	}
	if c.MaxSession > 0 {
		out = append(out, "max-session="+c.MaxSession.String())
	}
	if c.IdleTimeout > 0 {
		out = append(out, "idle-timeout="+c.IdleTimeout.String())
	}
	return strings.Join(out, ",")
}
