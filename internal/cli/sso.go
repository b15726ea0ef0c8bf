package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// The single sign-on commands: `sso list [USER]` and `sso revoke USER`.

func (e *env) ssoCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "sso",
		Short: "Single sign-on reuse windows (auth.oidc.reuse): list and revoke",
		Args:  argsOf(nil, 0),
	}
	list := &cobra.Command{
		Use:   "list [USER] [--all]",
		Short: "List the reuse windows of single sign-on (all gates sharing the store honour them)",
		Args:  argsOf(nil, 1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			user := ""
			if len(args) == 1 {
				if err := checkName("user", args[0]); err != nil {
					return err
				}
				user = args[0]
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			l, err := st.ListSSOSessions(cmd.Context(), user)
			if err != nil {
				return err
			}
			now := time.Now()
			t := newTable(e.stdout, "USER", "KEY", "SOURCE", "SUBJECT", "AMR", "UNTIL", "LEFT")
			for _, s := range l {
				left := s.Expires.Sub(now).Round(time.Second)
				if left <= 0 && !all {
					continue
				}
				ls := left.String()
				if left <= 0 {
					ls = "expired"
				}
				t.row(s.User, s.Fingerprint, s.Source, orDash(s.Subject), orDash(s.AMR), s.Expires.Local().Format(time.RFC3339), ls)
			}
			return t.flush()
		}),
	}
	list.Flags().BoolVar(&all, "all", false, "also list expired windows not yet pruned")
	revoke := &cobra.Command{
		Use:   "revoke USER",
		Short: "End every reuse window of USER at once, on every gate sharing the store: the next login signs in again",
		Args:  argsOf([]string{"USER"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("user", args[0]); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			n, err := st.RevokeSSOSessions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "revoked %d single sign-on reuse window(s) of %s\n", n, args[0])
			return nil
		}),
	}
	cmd.AddCommand(list, revoke)
	return cmd
}
