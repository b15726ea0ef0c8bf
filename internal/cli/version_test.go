package cli

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionLine(t *testing.T) {
	vcs := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "e5f05b7aa1b2c3d4e5f6"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	for _, tt := range []struct {
		name string
		b    buildFacts
		want string
	}{
		{"stamped", buildFacts{version: "v1.2.0-3-ge5f05b7", commit: "e5f05b7aa1b2", date: "2026-12-03T06:00:00Z", info: vcs, goVersion: "go1.26", platform: "linux/amd64"},
			"sshgate v1.2.0-3-ge5f05b7 (commit e5f05b7aa1b2, built 2026-12-03T06:00:00Z, go1.26 linux/amd64)"},
		{"plain go build in a git tree", buildFacts{info: vcs, goVersion: "go1.26", platform: "linux/amd64"},
			"sshgate devel (commit e5f05b7aa1b2 (modified), committed 2026-12-01T10:00:00Z, go1.26 linux/amd64)"},
		{"no vcs facts", buildFacts{info: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, goVersion: "go1.26", platform: "linux/amd64"},
			"sshgate devel (not stamped: build with `make build`, go1.26 linux/amd64)"},
		{"go install module@version", buildFacts{info: &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}}, goVersion: "go1.26", platform: "linux/amd64"},
			"sshgate v1.3.0 (go1.26 linux/amd64)"},
	} {
		if got := versionLine(tt.b); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

// `version` and `--version` print the same stamped line.
func TestVersionCommandAndFlag(t *testing.T) {
	defer func(v, c, d string) { Version, Commit, BuildDate = v, c, d }(Version, Commit, BuildDate)
	Version, Commit, BuildDate = "v9.9.9", "abcdef123456", "2026-12-03T06:00:00Z"
	want := "sshgate v9.9.9 (commit abcdef123456, built 2026-12-03T06:00:00Z, "
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errOut := runCLI(t, "", "", args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, want) || strings.Count(out, "\n") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want one line starting %q", args, code, out, errOut, want)
		}
	}
}
