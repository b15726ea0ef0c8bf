package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// `make build` stamps the binary with `git describe`, the commit and the
// build date; `sshgate version` and `--version` print them.
func TestMakeBuildStampsVersion(t *testing.T) {
	harness.RequireTools(t, "make", "git")
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	describe, err := exec.Command("git", "-C", root, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	bin := t.TempDir()
	mk := exec.Command("make", "-C", root, "build", "BIN="+bin, "GO="+goTool())
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	want := "sshgate " + strings.TrimSpace(string(describe)) + " (commit "
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(filepath.Join(bin, "sshgate"), arg).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), ", built 20") {
			t.Errorf("sshgate %s: %v, %q; want %q... with a build date", arg, err, out, want)
		}
	}
}

// goTool is the go command the test runs under.
func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}
