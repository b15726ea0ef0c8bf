package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/config"
)

// checkConfigCmd parses and validates a configuration file without starting
// anything: exit 0 when it is good, 1 with every problem (one per line,
// FILE:LINE: PATH: what is wrong, then how many) when it is not; a single
// problem is the one line.
func (e *env) checkConfigCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "check-config [--config FILE]",
		Short: "Check a configuration file and report every problem, with its line, without starting the gate",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			_, err := config.Check(file, nil)
			var ps config.Problems
			if errors.As(err, &ps) && len(ps) == 1 {
				return failf("%s", ps[0])
			}
			if errors.As(err, &ps) {
				for _, p := range ps {
					fmt.Fprintln(e.stderr, p.String())
				}
				what := "the defaults"
				if file != "" {
					what = file
				}
				return failf("%d problems in %s", len(ps), what)
			}
			if err != nil {
				return err
			}
			if file == "" {
				fmt.Fprintln(e.stdout, "no --config given: the defaults are valid")
				return nil
			}
			fmt.Fprintf(e.stdout, "%s: ok\n", file)
			return nil
		}),
	}
	cmd.Flags().StringVar(&file, "config", "", "YAML configuration file")
	return cmd
}
