package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/store"
)

// sessionView is one entry of `sessions --json`.
type sessionView struct {
	ID            string    `json:"id"`
	Gate          string    `json:"gate"`
	User          string    `json:"user"`
	Target        string    `json:"target"`
	Login         string    `json:"login"`
	Since         time.Time `json:"since"`
	BytesIn       int64     `json:"bytes_in"`
	BytesOut      int64     `json:"bytes_out"`
	Updated       time.Time `json:"updated"`
	KillRequested bool      `json:"kill_requested"`
}

var sessionID = regexp.MustCompile(`^[0-9a-f]{16}$`)

func (e *env) sessionsCmd() *cobra.Command {
	var asJSON bool
	list := func(cmd *cobra.Command, args []string) error {
		st, err := e.store()
		if err != nil {
			return err
		}
		ls, err := st.ListLiveSessions(cmd.Context())
		if err != nil {
			return err
		}
		if asJSON {
			views := []sessionView{}
			for _, l := range ls {
				views = append(views, sessionView{ID: l.ID, Gate: l.GateID, User: l.User, Target: l.Target, Login: l.Login,
					Since: l.Started, BytesIn: l.BytesIn, BytesOut: l.BytesOut, Updated: l.Updated, KillRequested: l.KillRequested})
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(views)
		}
		t := newTable(e.stdout, "ID", "USER", "TARGET", "LOGIN", "SINCE", "BYTES_IN", "BYTES_OUT")
		for _, l := range ls {
			id := l.ID
			if l.KillRequested {
				id += "*"
			}
			t.row(id, l.User, l.Target, orDash(l.Login), l.Started.UTC().Format(time.RFC3339),
				strconv.FormatInt(l.BytesIn, 10), strconv.FormatInt(l.BytesOut, 10))
		}
		return t.flush()
	}
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List live sessions (of every gate sharing the store); `sessions kill ID` ends one, `sessions watch ID` watches one",
		Args:  argsOf(nil, 0),
		RunE:  run(list),
	}
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List live sessions",
		Args:  argsOf(nil, 0),
		RunE:  run(list),
	}, &cobra.Command{
		Use:   "watch ID",
		Short: "Watch a live PTY session of this gate, read only (q or Ctrl-C leaves); its user is told",
		Args:  argsOf([]string{"ID"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			return e.watchSession(cmd.Context(), args[0]) // watch.go
		}),
	}, &cobra.Command{
		Use:   "kill ID",
		Short: "End a live session: its user sees a one-line message and a non-zero exit status",
		Args:  argsOf([]string{"ID"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if !sessionID.MatchString(id) {
				return usagef("sessions kill: %q is not a session id (16 hex digits, as `sshgate sessions` lists them)", id)
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.RequestKill(cmd.Context(), id); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return failf("session %s not found", id)
				}
				return err
			}
			// The gate polls every second: wait a little for the end.
			if waitGone(cmd.Context(), st, id, 5*time.Second) {
				fmt.Fprintf(e.stdout, "ended session %s\n", id)
			} else {
				fmt.Fprintf(e.stdout, "kill requested for session %s; its gate ends it at its next poll\n", id)
			}
			return nil
		}),
	})
	return cmd
}

// waitGone polls until session id is no longer live, up to d.
func waitGone(ctx context.Context, st store.Store, id string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		ls, err := st.ListLiveSessions(ctx)
		if err != nil {
			return false
		}
		found := false
		for _, l := range ls {
			found = found || l.ID == id
		}
		if !found {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
}
