package cli

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/live"
)

// gateView is one entry of `gates --json`.
type gateView struct {
	ID        string    `json:"id"`
	Address   string    `json:"address"`
	Version   string    `json:"version"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
	Sessions  int       `json:"sessions"`
	State     string    `json:"state"` // live, or stale once the heartbeat is older than the expiry
}

func (e *env) gatesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "gates",
		Short: "List the gates sharing the store, with their last heartbeat and live sessions",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			st, err := e.store()
			if err != nil {
				return err
			}
			gs, err := st.ListGates(cmd.Context())
			if err != nil {
				return err
			}
			now, expiry := time.Now(), e.heartbeatExpiry
			if expiry <= 0 {
				expiry = live.HeartbeatExpiry
			}
			views := []gateView{}
			for _, g := range gs {
				state := "live"
				if now.Sub(g.Heartbeat) > expiry {
					state = "stale"
				}
				views = append(views, gateView{ID: g.ID, Address: g.Address, Version: g.Version,
					Started: g.Started.UTC(), Heartbeat: g.Heartbeat.UTC(), Sessions: g.Sessions, State: state})
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(views)
			}
			t := newTable(e.stdout, "ID", "ADDRESS", "VERSION", "STARTED", "HEARTBEAT", "SESSIONS", "STATE")
			for _, v := range views {
				t.row(v.ID, orDash(v.Address), orDash(v.Version), v.Started.Format(time.RFC3339),
					v.Heartbeat.Format(time.RFC3339), strconv.Itoa(v.Sessions), v.State)
			}
			return t.flush()
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
