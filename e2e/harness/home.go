package harness

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Home is a user's own home directory, set up as a user of the gate has it:
// the key in ~/.ssh/id_ed25519 and the gate's host key in
// ~/.ssh/known_hosts, no option given on any command line. OpenSSH's
// clients find ~/.ssh through the passwd entry, not $HOME, so Home's
// commands run in a private mount namespace (unshare -m, root only) with
// Dir mounted over that home: the commands the gate prints run there
// exactly as a user types them, reading ~/.ssh/config as they would.
type Home struct {
	Dir    string // the directory that is ~ inside the commands
	passwd string // the passwd entry's home it is mounted over
}

// NewHome makes a home for c: c's key as ~/.ssh/id_ed25519 (and .pub),
// c's known_hosts as ~/.ssh/known_hosts. It skips the test where a mount
// namespace cannot be had.
func NewHome(t testing.TB, c *Client) *Home {
	t.Helper()
	RequireTools(t, "unshare", "mount")
	u, err := user.Current()
	if err != nil || u.HomeDir == "" || u.HomeDir == "/" {
		t.Skipf("no passwd home to mount over: %v", err)
	}
	h := &Home{Dir: t.TempDir(), passwd: u.HomeDir}
	ssh := filepath.Join(h.Dir, ".ssh")
	copyFile := func(from, to string) error {
		b, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	}
	if err := errors.Join(
		os.Mkdir(ssh, 0o700),
		copyFile(c.Key, filepath.Join(ssh, "id_ed25519")),
		copyFile(c.Key+".pub", filepath.Join(ssh, "id_ed25519.pub")),
		copyFile(c.KnownHosts, filepath.Join(ssh, "known_hosts")),
	); err != nil {
		t.Fatal(err)
	}
	if r := Run(h.Shell("test -f ~/.ssh/id_ed25519"), nil, 30*time.Second); r.Code != 0 {
		if os.Geteuid() != 0 {
			t.Skipf("a home for the clients needs a mount namespace (root): %s", r.Stderr)
		}
		t.Fatalf("unshare -m: exit %d: %s", r.Code, r.Stderr)
	}
	return h
}

// Shell prepares `sh -c SCRIPT` run in the home (its working directory),
// with HOME set to it and no agent.
func (h *Home) Shell(script string) *exec.Cmd {
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" "$1" && cd "$1" && exec sh -c "$2"`, h.Dir, h.passwd, script)
	env := []string{"HOME=" + h.passwd, "SSH_AUTH_SOCK="}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "HOME=") && !strings.HasPrefix(e, "SSH_AUTH_SOCK=") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	return cmd
}

// Path is the host path of a file named relative to the home.
func (h *Home) Path(name string) string { return filepath.Join(h.Dir, name) }
