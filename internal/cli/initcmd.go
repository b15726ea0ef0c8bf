package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

// initCmd creates the data directory, its store, host keys and gate key:
// the only command besides serve that creates a data directory.
func (e *env) initCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the data directory (store, host keys, gate key) without starting the gate",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			d, created, err := datadir.Create(datadir.Resolve(e.data))
			if err != nil {
				return failf("%v", err)
			}
			st, err := sqlite.Open(d.DBPath())
			if err != nil {
				return failf("%v", err)
			}
			e.st = st
			if err := e.useKeys(d, e.configFile()); err != nil {
				return err
			}
			if _, err := d.HostKeys(false); err != nil {
				return err
			}
			if _, err := d.GateKey(); err != nil {
				return err
			}
			if created {
				fmt.Fprintf(e.stdout, "created data directory %s\n", d.Path)
			} else {
				fmt.Fprintf(e.stdout, "data directory %s already exists: kept (missing keys were generated)\n", d.Path)
			}
			return nil
		}),
	}
}
