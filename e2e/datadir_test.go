package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// A second `serve` on a data directory in use refuses in one line naming
// the running gate's pid, and changes nothing: the running gate's live
// sessions stay listed and served, its files untouched.
func TestSecondServeRefused(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	g := w.gate
	sess := w.alice.SSHTo("web-1", nil, "sleep 600")
	if err := sess.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sess.Process.Kill()
		sess.Wait()
	}()
	listed := func() bool { return strings.Contains(g.Admin(t, "sessions"), "alice") }
	if !harness.Eventually(short, listed) {
		t.Fatalf("the session is not listed: %q", g.Admin(t, "sessions"))
	}
	before := dirListing(t, g.DataDir)

	second := exec.Command(g.Bin, "serve", "--data", g.DataDir, "--listen", fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)))
	second.Env = append(os.Environ(), "SSHGATE_DATA="+g.DataDir)
	r := harness.Run(second, nil, short)
	want := fmt.Sprintf("sshgate: data directory %s is in use by another sshgate serve (pid %d)\n", g.DataDir, g.PID())
	if r.Code != 1 || r.Stdout != "" || r.Stderr != want {
		t.Fatalf("second serve: exit %d, stdout %q, stderr %q; want exit 1 and stderr %q", r.Code, r.Stdout, r.Stderr, want)
	}

	if after := dirListing(t, g.DataDir); after != before {
		t.Errorf("the refused serve changed the data directory:\n%s\nthen\n%s", before, after)
	}
	if !listed() {
		t.Errorf("the running gate's live session is gone: %q", g.Admin(t, "sessions"))
	}
	if g.Exited() {
		t.Fatal("the running gate exited")
	}
	harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
	b, err := os.ReadFile(filepath.Join(g.DataDir, "serve.pid"))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(g.PID()) {
		t.Errorf("serve.pid holds %q, %v; want %d", b, err, g.PID())
	}
}

// dirListing names every file of dir but the store's (which the running
// gate writes), with its size and modification time.
func dirListing(t *testing.T, dir string) string {
	t.Helper()
	var sb strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(fi.Name(), "sshgate.db") || strings.HasPrefix(p, filepath.Join(dir, "audit")) {
			return nil
		}
		fmt.Fprintf(&sb, "%s %v %d %s\n", p, fi.Mode(), fi.Size(), fi.ModTime())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}
