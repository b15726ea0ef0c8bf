package cli

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// platformRE is the NODEID-UID login form: never a user, env, target or
// alias name, so no login can be read two ways.
var platformRE = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

func checkNotPlatform(what, name string) error {
	if platformRE.MatchString(name) {
		return usagef("invalid %s name %q: digits-dash-digits is the NODEID-UID login form", what, name)
	}
	return nil
}

// addMenuCommands adds the account menu's admin commands to the
// target, user and env commands of root.
func (e *env) addMenuCommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		switch c.Name() {
		case "target":
			c.AddCommand(e.targetAliasCmd(), e.targetPrimaryCmd(), e.targetDescribeCmd())
		case "user":
			c.AddCommand(e.userDefaultTargetCmd(), e.userShowCmd())
		case "env":
			c.AddCommand(e.envGroupCmd())
			for _, sub := range c.Commands() {
				if sub.Name() == "add" {
					e.addEnvGroupFlag(sub)
				}
			}
		}
	}
}

func (e *env) targetAliasCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "alias", Short: "Manage a target's aliases (other names users may connect with)",
		Args: cobra.ArbitraryArgs, RunE: group, FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true}}
	add := &cobra.Command{
		Use:   "add TARGET ALIAS",
		Short: "Let users reach TARGET as USER+ALIAS (an alias is unique and never a target's name)",
		Args:  argsOf([]string{"TARGET", "ALIAS"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("target", args[0]); err != nil {
				return err
			}
			if err := checkAlias(args[1]); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.AddTargetAlias(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "added alias %s for target %s\n", args[1], args[0])
			return nil
		}),
	}
	remove := &cobra.Command{
		Use:   "remove ALIAS",
		Short: "Remove an alias",
		Args:  argsOf([]string{"ALIAS"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("alias", args[0]); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.RemoveTargetAlias(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "removed alias %s\n", args[0])
			return nil
		}),
	}
	cmd.AddCommand(add, remove)
	return cmd
}

func checkAlias(a string) error {
	if err := checkName("alias", a); err != nil {
		return err
	}
	if reservedTargets[a] {
		return usagef("invalid alias %q: reserved by the gate", a)
	}
	return nil
}

func (e *env) targetPrimaryCmd() *cobra.Command {
	var off bool
	cmd := &cobra.Command{
		Use:   "primary TARGET [--off]",
		Short: "Mark TARGET as its environment's primary node (shown in the menu)",
		Args:  argsOf([]string{"TARGET"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("target", args[0]); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.SetTargetPrimary(cmd.Context(), args[0], !off); err != nil {
				return err
			}
			if off {
				fmt.Fprintf(e.stdout, "target %s is no longer marked primary\n", args[0])
			} else {
				fmt.Fprintf(e.stdout, "target %s is marked primary\n", args[0])
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&off, "off", false, "remove the mark")
	return cmd
}

func (e *env) targetDescribeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "describe TARGET TEXT",
		Short: "Set a target's description (shown by target show); an empty TEXT clears it",
		Args:  argsOf([]string{"TARGET", "TEXT"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("target", args[0]); err != nil {
				return err
			}
			d := args[1]
			if len(d) > 200 || strings.ContainsFunc(d, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				return usagef("invalid description %q: at most 200 characters, no control characters", d)
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.SetTargetDescription(cmd.Context(), args[0], d); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "set the description of target %s\n", args[0])
			return nil
		}),
	}
}

func (e *env) userDefaultTargetCmd() *cobra.Command {
	var clear bool
	cmd := &cobra.Command{
		Use:   "default-target USER (TARGET | --clear)",
		Short: "Send `ssh USER@gate` straight to TARGET (USER+gate still reaches the gate's commands)",
		Args:  argsOf([]string{"USER"}, 1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("user", args[0]); err != nil {
				return err
			}
			target := ""
			switch {
			case clear && len(args) == 1:
			case !clear && len(args) == 2:
				target = args[1]
				if err := checkName("target", target); err != nil {
					return err
				}
			default:
				return usagef("%s: give exactly one of TARGET and --clear", name(cmd))
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.SetDefaultTarget(cmd.Context(), args[0], target); err != nil {
				return err
			}
			if target == "" {
				fmt.Fprintf(e.stdout, "user %s has no default target\n", args[0])
			} else {
				fmt.Fprintf(e.stdout, "default target of %s is %s\n", args[0], target)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&clear, "clear", false, "remove the default target")
	return cmd
}

func (e *env) userShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show USER",
		Short: "Show a user's uid (for NODEID-UID logins) and default target",
		Args:  argsOf([]string{"USER"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("user", args[0]); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			ui, err := st.GetUserInfo(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			tw := newTable(e.stdout, "FIELD", "VALUE")
			tw.row("name", ui.User)
			tw.row("uid", strconv.FormatInt(ui.UID, 10))
			tw.row("default target", orDash(ui.DefaultTarget))
			return tw.flush()
		}),
	}
}

func (e *env) envGroupCmd() *cobra.Command {
	var clear bool
	cmd := &cobra.Command{
		Use:   "group ENV (GROUP | --clear)",
		Short: "Put an environment in a group (the first level of the account menu)",
		Args:  argsOf([]string{"ENV"}, 1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("env", args[0]); err != nil {
				return err
			}
			g := ""
			switch {
			case clear && len(args) == 1:
			case !clear && len(args) == 2:
				g = args[1]
				if err := checkName("group", g); err != nil {
					return err
				}
			default:
				return usagef("%s: give exactly one of GROUP and --clear", name(cmd))
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.SetEnvGroup(cmd.Context(), args[0], g); err != nil {
				return err
			}
			if g == "" {
				fmt.Fprintf(e.stdout, "env %s is in no group\n", args[0])
			} else {
				fmt.Fprintf(e.stdout, "env %s is in group %s\n", args[0], g)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&clear, "clear", false, "take the environment out of its group")
	return cmd
}

// addEnvGroupFlag gives `env add` a --group flag.
func (e *env) addEnvGroupFlag(add *cobra.Command) {
	var g string
	add.Flags().StringVar(&g, "group", "", "the group the environment belongs to (the first level of the account menu)")
	inner := add.RunE
	add.RunE = func(cmd *cobra.Command, args []string) error {
		if g != "" {
			if err := checkName("group", g); err != nil {
				return run(func(*cobra.Command, []string) error { return err })(cmd, args)
			}
		}
		if err := inner(cmd, args); err != nil || g == "" {
			return err
		}
		return run(func(cmd *cobra.Command, args []string) error {
			st, err := e.store()
			if err != nil {
				return err
			}
			if err := st.SetEnvGroup(cmd.Context(), args[0], g); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "env %s is in group %s\n", args[0], g)
			return nil
		})(cmd, args)
	}
}

// targetInfos maps target names to their ids and aliases, for list and show.
func targetInfos(ctx context.Context, st store.Store) (map[string]gate.TargetInfo, error) {
	list, err := st.ListTargetInfo(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]gate.TargetInfo, len(list))
	for _, ti := range list {
		out[ti.Target] = ti
	}
	return out, nil
}

// infoRows are the rows `target show` adds for the menu.
func infoRows(ti gate.TargetInfo) [][2]string {
	primary := "no"
	if ti.Primary {
		primary = "yes"
	}
	return [][2]string{
		{"id", strconv.FormatInt(ti.ID, 10)},
		{"aliases", orDash(strings.Join(ti.Aliases, " "))},
		{"primary", primary},
		{"about", orDash(ti.Description)},
	}
}
