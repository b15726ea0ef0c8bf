package e2e_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// tmuxPane drives one program in a detached tmux session of its own server.
type tmuxPane struct {
	sock, name string
}

func (p *tmuxPane) tmux(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("tmux %q: %v: %s", args, err, out)
	}
	return string(out)
}

// keys sends tmux key names (F5, Down, Enter) or literal text ("-l", text).
func (p *tmuxPane) keys(t *testing.T, keys ...string) {
	t.Helper()
	p.tmux(t, append([]string{"send-keys", "-t", p.name}, keys...)...)
}

func (p *tmuxPane) screen(t *testing.T) string {
	t.Helper()
	return p.tmux(t, "capture-pane", "-p", "-t", p.name)
}

// waitNoScreen waits until the pane no longer shows any of gone (a dialog).
func (p *tmuxPane) waitNoScreen(t *testing.T, gone ...string) {
	t.Helper()
	var s string
	if !harness.Eventually(30*time.Second, func() bool {
		s = p.screen(t)
		for _, g := range gone {
			if strings.Contains(s, g) {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the screen still shows one of %q:\n%s", gone, s)
	}
}

// waitScreen waits until the pane shows want.
func (p *tmuxPane) waitScreen(t *testing.T, want string) {
	t.Helper()
	var s string
	if !harness.Eventually(30*time.Second, func() bool { s = p.screen(t); return strings.Contains(s, want) }) {
		t.Fatalf("the screen never showed %q:\n%s", want, s)
	}
}

func randomFile(t *testing.T, path string, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Midnight Commander itself, in tmux, on a sh:// (FISH) panel through the
// gate: an upload (F5), a download (F5 back), the listing, a rename (F6) and
// a delete (F8) against an sshd target; the files are byte-exact on the
// other side and each operation's audit event carries the real path, and
// the transfers their size and sha256.
func TestMidnightCommanderFISH(t *testing.T) {
	gateOnly(t)
	harness.RequireTools(t, "mc", "tmux")
	t.Parallel()
	w := newWorld(t, worldOptions{})
	log := &auditLog{path: filepath.Join(w.gate.DataDir, "audit", "audit.jsonl")}
	local, remote, bin := t.TempDir(), t.TempDir(), t.TempDir()
	upSum := randomFile(t, filepath.Join(local, "up.bin"), 100_000)
	downSum := randomFile(t, filepath.Join(remote, "down.bin"), 70_000)
	os.WriteFile(filepath.Join(remote, "old.txt"), []byte("rename me\n"), 0o644)
	os.WriteFile(filepath.Join(remote, "gone.txt"), []byte("delete me\n"), 0o644)

	// mc runs "ssh" from PATH with its own -l/-p/host arguments from the
	// URL; this one adds only the test's key and known hosts.
	wrapper := fmt.Sprintf("#!/bin/sh\nexec /usr/bin/ssh %s \"$@\"\n", strings.TrimPrefix(w.alice.SSHCommandLine(), "ssh "))
	// SSHCommandLine ends in -p GATEPORT; mc's own -p from the URL comes later and wins.
	os.WriteFile(filepath.Join(bin, "ssh"), []byte(wrapper), 0o755)

	home := t.TempDir()
	url := fmt.Sprintf("sh://%s@%s:%d%s", w.alice.Login("web-1"), w.alice.Host, w.alice.Port, remote)
	p := &tmuxPane{sock: filepath.Join(t.TempDir(), "tmux"), name: "mc"}
	cmd := fmt.Sprintf("env HOME=%s PATH=%s:%s TERM=xterm mc -b -u %s %s", home, bin, os.Getenv("PATH"), harness.ShellQuote(local), harness.ShellQuote(url))
	p.tmux(t, "new-session", "-d", "-s", p.name, "-x", "160", "-y", "48", cmd)
	t.Cleanup(func() { exec.Command("tmux", "-S", p.sock, "kill-server").Run() })
	p.waitScreen(t, "gone.txt") // the remote panel is listed

	waitFile := func(path, sum string) {
		t.Helper()
		if !harness.Eventually(30*time.Second, func() bool {
			b, err := os.ReadFile(path)
			h := sha256.Sum256(b)
			return err == nil && hex.EncodeToString(h[:]) == sum
		}) {
			t.Fatalf("%s never arrived byte-exact; screen:\n%s", path, p.screen(t))
		}
	}
	waitGone := func(path string) {
		t.Helper()
		if !harness.Eventually(30*time.Second, func() bool { _, err := os.Stat(path); return os.IsNotExist(err) }) {
			t.Fatalf("%s is still there; screen:\n%s", path, p.screen(t))
		}
	}
	// Left panel (local): "..", up.bin. Copy up.bin to the remote panel.
	p.keys(t, "Home", "Down", "F5")
	p.waitScreen(t, "with source mask")
	p.keys(t, "Enter")
	waitFile(filepath.Join(remote, "up.bin"), upSum)
	idle := func() { t.Helper(); p.waitNoScreen(t, "with source mask", "Source", "Delete file") }
	idle()
	// Right panel (remote): "..", down.bin, gone.txt, old.txt, up.bin.
	p.keys(t, "Tab")
	p.waitScreen(t, "up.bin")
	p.keys(t, "Home", "Down", "F5")
	p.waitScreen(t, "with source mask")
	p.keys(t, "Enter")
	waitFile(filepath.Join(local, "down.bin"), downSum)
	idle()
	p.keys(t, "Home", "Down", "Down", "Down", "F6")
	p.waitScreen(t, "with source mask")
	p.keys(t, "-l", "renamed.txt") // relative: in the panel's sh:// directory
	p.keys(t, "Enter")
	waitFile(filepath.Join(remote, "renamed.txt"), sha256Hex([]byte("rename me\n")))
	waitGone(filepath.Join(remote, "old.txt"))
	idle()
	p.waitScreen(t, "renamed.txt")
	p.keys(t, "Home", "Down", "Down", "F8")
	p.waitScreen(t, "Delete file")
	p.keys(t, "Enter")
	waitGone(filepath.Join(remote, "gone.txt"))
	idle()
	p.keys(t, "F10")
	exec.Command("tmux", "-S", p.sock, "kill-server").Run()

	var files []map[string]any
	for _, e := range log.next(t) {
		if e["type"] == "file" {
			files = append(files, e)
		}
	}
	find := func(op, path string) map[string]any {
		for _, e := range files {
			if e["op"] == op && e["path"] == path {
				return e
			}
		}
		t.Fatalf("no file %s event for %s in %v", op, path, files)
		return nil
	}
	for _, x := range []struct {
		op, path, sum string
		size          int
	}{
		{"write", remote + "/up.bin", upSum, 100_000}, {"read", remote + "/down.bin", downSum, 70_000},
	} {
		e := find(x.op, x.path)
		if e["protocol"] != "fish" || e["result"] != "ok" || e["sha256"] != x.sum || e["size"] != float64(x.size) {
			t.Errorf("%s %s: %v, want fish ok size %d sha256 %s", x.op, x.path, e, x.size, x.sum)
		}
	}
	find("list", remote)
	if e := find("rename", remote+"/old.txt"); e["new_path"] != remote+"/renamed.txt" || e["result"] != "ok" {
		t.Errorf("rename: %v", e)
	}
	if e := find("remove", remote+"/gone.txt"); e["result"] != "ok" {
		t.Errorf("remove: %v", e)
	}
	for _, e := range files {
		if s, _ := e["path"].(string); strings.Contains(s, "$") || strings.Contains(s, "FISH_") {
			t.Errorf("an unexpanded path in %v", e)
		}
	}
}

func sha256Hex(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
