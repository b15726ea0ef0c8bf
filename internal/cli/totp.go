package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/app"
	"github.com/sshgate/sshgate/internal/auth/totp"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// The TOTP commands: `user totp enroll|disable|status` and `mfa`.

func (e *env) userTOTPCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "totp", Short: "Manage users' TOTP second factor", Args: cobra.ArbitraryArgs, RunE: group}
	var code string
	enroll := &cobra.Command{
		Use:   "enroll USER [--code CODE]",
		Short: "Enrol USER: print the otpauth:// URI, a QR code and the secret; active once one valid code is given (stdin, or --code later)",
		Args:  argsOf([]string{"USER"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			user := args[0]
			if err := checkName("user", user); err != nil {
				return err
			}
			withCode := cmd.Flags().Changed("code")
			if _, ok := totp.NormalizeCode(code); withCode && !ok {
				return usagef("user totp enroll %s: --code: want the 6 digits the authenticator shows", user)
			}
			st, key, err := e.totpStore()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if _, err := st.GetUser(ctx, user); err != nil {
				return err
			}
			if withCode { // activate the secret an earlier `enroll USER` left pending
				t, err := st.GetTOTP(ctx, user)
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				if t.Pending == "" {
					return failf("user totp enroll %s: no pending enrolment; run `sshgate user totp enroll %s` first", user, user)
				}
				secret, err := totp.Open(key, user, t.Pending)
				if err != nil {
					return err
				}
				if err := activateTOTP(ctx, st, key, user, secret, code, time.Now()); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "enrolled %s for TOTP\n", user)
				return nil
			}
			secret, uri, err := totp.Generate(user)
			if err != nil {
				return err
			}
			sealed, err := totp.Seal(key, user, secret)
			if err != nil {
				return err
			}
			if err := st.SetPendingTOTP(ctx, user, sealed); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s\n\n", uri)
			if err := totp.WriteQR(e.stdout, uri, "\n"); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "\nsecret: %s\n", secret)
			fmt.Fprint(e.stderr, "Verification code: ")
			line, err := bufio.NewReader(e.stdin).ReadString('\n')
			if err != nil && err != io.EOF {
				return failf("read the verification code: %v", err)
			}
			if strings.TrimSpace(line) == "" {
				fmt.Fprintf(e.stderr, "\nnot active yet: `sshgate user totp enroll %s --code CODE` activates it\n", user)
				return nil
			}
			if err := activateTOTP(ctx, st, key, user, secret, line, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "enrolled %s for TOTP\n", user)
			return nil
		}),
	}
	enroll.Flags().StringVar(&code, "code", "", "the code the authenticator shows (default: read one line from stdin)")

	disable := &cobra.Command{
		Use:   "disable USER",
		Short: "Remove USER's TOTP enrolment",
		Args:  argsOf([]string{"USER"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("user", args[0]); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.RemoveTOTP(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "disabled TOTP for %s\n", args[0])
			return nil
		}),
	}

	status := &cobra.Command{
		Use:   "status [USER]",
		Short: "Show which users have TOTP enrolled",
		Args:  argsOf(nil, 1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			st, err := e.store()
			if err != nil {
				return err
			}
			users, err := st.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if err := checkName("user", args[0]); err != nil {
					return err
				}
				u, err := st.GetUser(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				users = []gate.User{u}
			}
			enrolled, err := st.ListTOTP(cmd.Context())
			if err != nil {
				return err
			}
			byUser := map[string]gate.TOTP{}
			for _, t := range enrolled {
				byUser[t.User] = t
			}
			t := newTable(e.stdout, "USER", "TOTP", "SINCE")
			for _, u := range users {
				en, ok := byUser[u.Name]
				switch {
				case ok && en.Active && en.Pending != "":
					t.row(u.Name, "enrolled,pending", en.CreatedAt.Local().Format(time.RFC3339))
				case ok && en.Active:
					t.row(u.Name, "enrolled", en.CreatedAt.Local().Format(time.RFC3339))
				case ok && en.Pending != "":
					t.row(u.Name, "pending", "-")
				default:
					t.row(u.Name, "no", "-")
				}
			}
			return t.flush()
		}),
	}
	cmd.AddCommand(enroll, disable, status)
	return cmd
}

// totpStore opens the store and the sealing key of the data directory.
func (e *env) totpStore() (store.Store, []byte, error) {
	d, err := e.dataDir()
	if err != nil {
		return nil, nil, err
	}
	key, err := app.TOTPKey(d)
	if err != nil {
		return nil, nil, failf("%v", err)
	}
	st, err := e.store()
	if err != nil {
		return nil, nil, err
	}
	return st, key, nil
}

// activateTOTP checks code against secret and, when it is valid, stores the
// enrolment as active with the code's step used, replacing any earlier one.
func activateTOTP(ctx context.Context, st store.Store, key []byte, user, secret, code string, now time.Time) error {
	step, ok := totp.Check(secret, strings.TrimSpace(code), now)
	if !ok {
		return failf("user totp enroll %s: wrong verification code; not active (check the device's clock; retry with --code CODE)", user)
	}
	sealed, err := totp.Seal(key, user, secret)
	if err != nil {
		return err
	}
	if err := st.PutTOTP(ctx, gate.TOTP{User: user, Secret: sealed, Active: true, CreatedAt: now}); err != nil {
		return err
	}
	if _, err := st.UseTOTPStep(ctx, user, step); err != nil {
		return err
	}
	return nil
}

var totpModes = []string{gate.TOTPAlways, gate.TOTPNever, gate.TOTPGrace, "default"}

func (e *env) mfaCmd() *cobra.Command {
	var envName, target, mode string
	cmd := &cobra.Command{
		Use:   "mfa [(--env ENV | --target NAME) --totp always|never|grace|default]",
		Short: "Show or set when an env or a target asks for a TOTP code",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			st, err := e.store()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if envName == "" && target == "" && mode == "" {
				return e.listModes(ctx, st)
			}
			if (envName == "") == (target == "") {
				return usagef("mfa: give exactly one of --env and --target")
			}
			if !isTOTPMode(mode) {
				return usagef("mfa: --totp %q: want one of %s", mode, strings.Join(totpModes, ", "))
			}
			what, name := "env", envName
			if target != "" {
				what, name = "target", target
			}
			if err := checkName(what, name); err != nil {
				return err
			}
			m := mode
			if m == "default" {
				m = ""
			}
			if err := st.SetTOTPMode(ctx, envName, target, m); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s %s: totp %s\n", what, name, mode)
			return nil
		}),
	}
	cmd.Flags().StringVar(&envName, "env", "", "the environment")
	cmd.Flags().StringVar(&target, "target", "", "the target")
	cmd.Flags().StringVar(&mode, "totp", "", "always, never, grace (mfa.totp.grace) or default (the env's, else the config's)")
	return cmd
}

func (e *env) listModes(ctx context.Context, st store.Store) error {
	t := newTable(e.stdout, "KIND", "NAME", "TOTP")
	envs, err := st.ListEnvs(ctx)
	if err != nil {
		return err
	}
	for _, en := range envs {
		m, err := st.GetTOTPMode(ctx, en.Name, "")
		if err != nil {
			return err
		}
		t.row("env", en.Name, orDefault(m))
	}
	targets, err := st.ListTargets(ctx)
	if err != nil {
		return err
	}
	for _, tg := range targets {
		m, err := st.GetTOTPMode(ctx, "", tg.Name)
		if err != nil {
			return err
		}
		t.row("target", tg.Name, orDefault(m))
	}
	return t.flush()
}

func orDefault(m string) string {
	if m == "" {
		return "default"
	}
	return m
}

func isTOTPMode(s string) bool {
	for _, x := range totpModes {
		if x == s {
			return true
		}
	}
	return false
}
