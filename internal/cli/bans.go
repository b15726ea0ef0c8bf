package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/sshd/penalty"
)

// The ban commands: `bans` and `bans lift ADDR`.

func (e *env) bansCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "bans [--all]",
		Short: "List the sources banned by the penalties (all gates sharing this data directory)",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			st, err := e.store()
			if err != nil {
				return err
			}
			bans, err := st.ListBans(cmd.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			t := newTable(e.stdout, "SOURCE", "UNTIL", "LEFT", "COUNT", "REASON")
			for _, b := range bans {
				left := b.Until.Sub(now).Round(time.Second)
				if left <= 0 && !all {
					continue
				}
				l := left.String()
				if left <= 0 {
					l = "expired"
				}
				t.row(b.Source, b.Until.Local().Format(time.RFC3339), l, strconv.Itoa(b.Count), orDash(b.Reason))
			}
			return t.flush()
		}),
	}
	cmd.Flags().BoolVar(&all, "all", false, "also list ended bans still remembered for their repeat count")
	lift := &cobra.Command{
		Use:   "lift ADDR",
		Short: "Lift the ban of ADDR (an IPv4 address, or an IPv6 address or /64); running gates see it within penalties.refresh",
		Args:  argsOf([]string{"ADDR"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			src, err := penalty.ParseSource(args[0])
			if err != nil {
				return usagef("bans lift: %v", err)
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.RemoveBan(cmd.Context(), src.String()); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "lifted the ban of %s\n", src)
			return nil
		}),
	}
	cmd.AddCommand(lift)
	return cmd
}
