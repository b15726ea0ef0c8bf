package cli

import (
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
			for _, id := range ids {
				if err := st.RequestKill(cmd.Context(), id); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
			}
			ended := 0
			for _, id := range ids {
				if waitGone(cmd.Context(), st, id, 5*time.Second) {
					ended++
				}
			}
			if ended == len(ids) {
				fmt.Fprintf(e.stdout, "ended %d live sessions of %s\n", ended, name)
			} else {
				fmt.Fprintf(e.stdout, "ended %d of %d live sessions of %s; their gates end the rest at their next poll\n", ended, len(ids), name)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&keep, "keep-sessions", false, "leave the user's live sessions running")
	return cmd
}
