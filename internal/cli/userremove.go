package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/store"
)

// userRemoveCmd removes a user with their keys and grants and, unless
// --keep-sessions, asks the gates to end the user's live sessions (the kill
// request `sessions kill` makes; each gate logs the end with its reason).
func (e *env) userRemoveCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "remove NAME [--keep-sessions]",
		Short: "Remove a user with their keys and grants, and end their live sessions",
		Args:  argsOf([]string{"NAME"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName("user", name); err != nil {
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
				if l.User == name {
					ids = append(ids, l.ID)
				}
			}
			// Listed before the removal: the sessions outlive the user's row.
			if err := st.RemoveUser(cmd.Context(), name); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "removed user %s\n", name)
			if len(ids) == 0 {
				return nil
			}
			if keep {
				fmt.Fprintf(e.stdout, "%d live sessions of %s keep running (--keep-sessions); `sshgate sessions kill ID` ends one\n", len(ids), name)
				return nil
			}
			return e.endSessions(cmd.Context(), st, ids, "of "+name)
		}),
	}
	cmd.Flags().BoolVar(&keep, "keep-sessions", false, "leave the user's live sessions running")
	return cmd
}

// endSessions asks the gates to end live sessions ids (the kill request
// `sessions kill` makes; each gate logs and audits the end with its
// reason), waits a little for them to go, and says how many did. what
// names them for the operator ("of alice").
func (e *env) endSessions(ctx context.Context, st store.Store, ids []string, what string) error {
	for _, id := range ids {
		if err := st.RequestKill(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	ended := 0
	for _, id := range ids {
		if waitGone(ctx, st, id, 5*time.Second) {
			ended++
		}
	}
	if ended == len(ids) {
		fmt.Fprintf(e.stdout, "ended %d live sessions %s\n", ended, what)
	} else {
		fmt.Fprintf(e.stdout, "ended %d of %d live sessions %s; their gates end the rest at their next poll\n", ended, len(ids), what)
	}
	return nil
}
