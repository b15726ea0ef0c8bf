package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Stamped at build time by the Makefile's build target:
//
//	-ldflags "-X github.com/sshgate/sshgate/internal/cli.Version=$(git describe)
//	          -X github.com/sshgate/sshgate/internal/cli.Commit=...
//	          -X github.com/sshgate/sshgate/internal/cli.BuildDate=..."
//
// A plain `go build` leaves them empty; the version line then says
// "devel" and shows the VCS facts Go embeds in the binary, if any.
var (
	Version   = ""
	Commit    = ""
	BuildDate = ""
)

// buildFacts are what a version line is made of.
type buildFacts struct {
	version, commit, date string // stamped
	info                  *debug.BuildInfo
	goVersion, platform   string
}

func currentBuild() buildFacts {
	bi, _ := debug.ReadBuildInfo()
	return buildFacts{
		version: Version, commit: Commit, date: BuildDate, info: bi,
		goVersion: runtime.Version(), platform: runtime.GOOS + "/" + runtime.GOARCH,
	}
}

// versionLine is the one line `sshgate version` prints.
func versionLine(b buildFacts) string {
	var parts []string
	ver := b.version
	if ver != "" {
		if b.commit != "" {
			parts = append(parts, "commit "+b.commit)
		}
		if b.date != "" {
			parts = append(parts, "built "+b.date)
		}
	} else {
		ver = "devel"
		var rev, when string
		modified := false
		if b.info != nil {
			if v := b.info.Main.Version; v != "" && v != "(devel)" {
				ver = v // go install module@version
			}
			for _, s := range b.info.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.time":
					when = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
		}
		switch {
		case rev != "":
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if modified {
				rev += " (modified)"
			}
			parts = append(parts, "commit "+rev)
			if when != "" {
				parts = append(parts, "committed "+when)
			}
		case ver == "devel":
			parts = append(parts, "not stamped: build with `make build`")
		}
	}
	parts = append(parts, b.goVersion+" "+b.platform)
	return fmt.Sprintf("sshgate %s (%s)", ver, strings.Join(parts, ", "))
}

func (e *env) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and build date",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(e.stdout, versionLine(currentBuild()))
			return nil
		}),
	}
}

// setVersionFlag makes `sshgate --version` print the same line.
func setVersionFlag(root *cobra.Command) {
	root.Version = versionLine(currentBuild())
	root.SetVersionTemplate("{{.Version}}\n")
}
