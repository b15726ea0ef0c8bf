package secretfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kubeletVolume lays files out as the kubelet mounts a Secret volume:
// DIR/NAME -> ..data/NAME, DIR/..data -> ..TIMESTAMP, the files in
// DIR/..TIMESTAMP with mode, and the directories read-only.
func kubeletVolume(t *testing.T, mode os.FileMode, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	ts := "..2026_12_04_13_00_00.123456789"
	if err := os.MkdirAll(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		p := filepath.Join(dir, ts, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, ts), 0o555)
	os.Chmod(dir, 0o555)
	t.Cleanup(func() { os.Chmod(dir, 0o755); os.Chmod(filepath.Join(dir, ts), 0o755) })
	return dir
}

func TestReadKubeletSecretVolume(t *testing.T) {
	for _, mode := range []os.FileMode{0o400, 0o440, 0o600, 0o640} {
		dir := kubeletVolume(t, mode, map[string]string{"ssh_host_ed25519_key": "KEY"})
		got, err := Read(filepath.Join(dir, "ssh_host_ed25519_key"))
		if err != nil || string(got) != "KEY" {
			t.Errorf("mode %04o: %q %v", mode, got, err)
		}
	}
	// A plain file, no symlinks, read through a symlinked directory.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "k"), []byte("PLAIN"), 0o400)
	os.Symlink(dir, filepath.Join(t.TempDir(), "link"))
	if got, err := Read(filepath.Join(dir, "k")); err != nil || string(got) != "PLAIN" {
		t.Errorf("plain file: %q %v", got, err)
	}
}

func TestReadRefusesBadModes(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		want string
	}{
		{0o444, "mode 0444: others may read it, refusing"},
		{0o404, "mode 0404: others may read it, refusing"},
		{0o644, "mode 0644: others may read it, refusing"}, // the kubelet's default defaultMode
		{0o460, "mode 0460: its group may write to it, refusing"},
		{0o402, "mode 0402: others may write to it, refusing"},
		{0o666, "others may write to it"},
	} {
		dir := kubeletVolume(t, tt.mode, map[string]string{"user_ca": "KEY"})
		p := filepath.Join(dir, "user_ca")
		_, err := Read(p)
		if err == nil || !strings.HasPrefix(err.Error(), p+": ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("mode %04o: %v, want %q naming %s", tt.mode, err, tt.want, p)
		}
		if err != nil && strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("not one line: %q", err)
		}
	}
}

func TestReadRefusesMissingAndOutside(t *testing.T) {
	dir := kubeletVolume(t, 0o400, map[string]string{"a": "A"})
	missing := filepath.Join(dir, "ssh_host_rsa_key")
	_, err := Read(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), missing+": does not exist") {
		t.Errorf("missing file: %v", err)
	}
	// A link out of the mount directory, however it is spelled.
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("OUT"), 0o400)
	mount := t.TempDir()
	os.Symlink(outside, filepath.Join(mount, "abs"))
	os.Symlink(filepath.Join("..", filepath.Base(filepath.Dir(outside)), "secret"), filepath.Join(mount, "rel"))
	os.Symlink("../"+filepath.Base(mount)+"/..", filepath.Join(mount, "up"))
	for _, name := range []string{"abs", "rel", "up"} {
		p := filepath.Join(mount, name)
		if got, err := Read(p); err == nil || !strings.HasPrefix(err.Error(), p+": ") {
			t.Errorf("%s: read %q, err %v", name, got, err)
		}
	}
	if _, err := Read(filepath.Join(mount, "abs")); err == nil || !strings.Contains(err.Error(), "outside its directory") {
		t.Errorf("abs: %v", err)
	}
	if _, err := Read("relative/key"); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("relative: %v", err)
	}
	// A directory, a FIFO: not key files.
	sub := filepath.Join(mount, "sub")
	os.Mkdir(sub, 0o700)
	if _, err := Read(sub); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	big := filepath.Join(mount, "big")
	os.WriteFile(big, make([]byte, MaxSize+1), 0o400)
	if _, err := Read(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big: %v", err)
	}
}

func TestReadRefusesOtherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	os.WriteFile(p, []byte("K"), 0o400)
	if err := os.Chown(p, 12345, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(p); err == nil || !strings.Contains(err.Error(), "owned by uid 12345") {
		t.Errorf("other owner: %v", err)
	}
	os.Chown(p, 0, 65532) // root:fsGroup, as the kubelet leaves them
	if _, err := Read(p); err != nil {
		t.Errorf("root-owned: %v", err)
	}
}
