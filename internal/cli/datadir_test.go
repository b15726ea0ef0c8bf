package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// Only serve and init create a data directory: every other command refuses
// a missing one with one line naming it, and creates nothing.
func TestMissingDataDirectoryIsRefused(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nonexistent")
	for _, args := range [][]string{{"user", "list"}, {"user", "add", "alice"}, {"gate-key"}, {"target", "list"}, {"ca", "init"}, {"sessions"}} {
		runSteps(t, missing, []step{{args: args, code: 1, errHas: []string{"data directory " + missing + " does not exist"}}})
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Fatalf("%v created %s: %v", args, missing, err)
		}
	}
	runSteps(t, missing, []step{
		{args: []string{"init"}, out: "created data directory " + missing + "\n"},
		{args: []string{"init"}, outHas: []string{"already exists: kept"}},
		{args: []string{"user", "list"}},
	})
	for _, f := range []string{"sshgate.db", "gate_key", "host_keys/ssh_host_ed25519_key"} {
		if _, err := os.Stat(filepath.Join(missing, f)); err != nil {
			t.Errorf("init did not create %s: %v", f, err)
		}
	}
	if fi, err := os.Stat(missing); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode: %v %v, want 0700", fi.Mode(), err)
	}
}

// As OpenSSH's StrictModes: a data directory others may write to, or a
// private key others may read, is refused with the chmod that fixes it.
func TestStrictModes(t *testing.T) {
	data := t.TempDir()
	runSteps(t, data, []step{{args: []string{"init"}, outHas: []string{"kept"}}})
	hostKey := filepath.Join(data, "host_keys", "ssh_host_ed25519_key")
	for _, tt := range []struct {
		path string
		mode os.FileMode
		want string
	}{
		{data, 0o777, data + " has mode 0777: others may write to it, refusing (chmod go-w " + data + ")"},
		{filepath.Join(data, "host_keys"), 0o770, "host_keys has mode 0770"},
		{hostKey, 0o644, "private key " + hostKey + " has mode 0644: others may read it, refusing (chmod 600 " + hostKey + ")"},
		{filepath.Join(data, "gate_key"), 0o640, "gate_key has mode 0640"},
	} {
		fi, err := os.Stat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tt.path, tt.mode); err != nil {
			t.Fatal(err)
		}
		runSteps(t, data, []step{{args: []string{"user", "list"}, code: 1, errHas: []string{tt.want}}})
		if err := os.Chmod(tt.path, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		runSteps(t, data, []step{{args: []string{"user", "list"}}})
	}
}
