package cli

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func tarOf(t *testing.T, entries map[string]string, typ byte) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(body)), Typeflag: typ}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRestoreRefusesWhatIsNotABackup(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"escape.tar":   tarOf(t, map[string]string{"../../etc/cron.d/x": "x"}, tar.TypeReg),
		"absolute.tar": tarOf(t, map[string]string{"/etc/passwd": "x"}, tar.TypeReg),
		"other.tar":    tarOf(t, map[string]string{"sshgate.db": "", "audit/audit.jsonl": "x"}, tar.TypeReg),
		"symlink.tar":  tarOf(t, map[string]string{"gate_key": ""}, tar.TypeSymlink),
		"nodb.tar":     tarOf(t, map[string]string{"gate_key": "k"}, tar.TypeReg),
		"garbage.tar":  []byte("this is not a tar file at all, not even close to one; " + string(make([]byte, 600))),
	} {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(t.TempDir(), "restored")
		runSteps(t, target, []step{{name: name, args: []string{"restore", f}, code: 1, errHas: []string{"restore " + f + ": "}}})
		if _, err := os.Stat(filepath.Join(dir, "..", "..", "etc", "cron.d", "x")); err == nil {
			t.Fatalf("%s escaped the data directory", name)
		}
	}
	// A non-empty data directory is never restored over.
	runSteps(t, t.TempDir(), []step{{args: []string{"init"}}, {args: []string{"restore", filepath.Join(dir, "nodb.tar")}, code: 1, errHas: []string{"is not empty"}}})
}

func TestBackupRoundTrip(t *testing.T) {
	data := t.TempDir()
	runSteps(t, data, []step{{args: []string{"init"}}, {args: []string{"user", "add", "alice"}}, {args: []string{"ca", "init"}}})
	out := filepath.Join(t.TempDir(), "b.tar")
	runSteps(t, data, []step{
		{args: []string{"backup", out}, outHas: []string{"wrote " + out}},
		{args: []string{"backup", out}, code: 1, errHas: []string{"already exists"}},
	})
	restored := filepath.Join(t.TempDir(), "r")
	runSteps(t, restored, []step{
		{args: []string{"restore", out}, outHas: []string{"restored "}},
		{args: []string{"user", "list"}, outHas: []string{"alice"}},
		{args: []string{"ca", "show", "client"}, outHas: []string{"ssh-ed25519 "}},
	})
	for _, f := range []string{"gate_key", "ca/client_ca", "host_keys/ssh_host_ed25519_key"} {
		a, _ := os.ReadFile(filepath.Join(data, f))
		b, err := os.ReadFile(filepath.Join(restored, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s not restored as it was: %v", f, err)
		}
		if fi, _ := os.Stat(filepath.Join(restored, f)); fi == nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: restored mode %v, want 0600", f, fi.Mode())
		}
	}
	runSteps(t, filepath.Join(t.TempDir(), "none"), []step{{args: []string{"backup", out + "2"}, code: 1, errHas: []string{"does not exist"}}})
}

func FuzzBackupName(f *testing.F) {
	for _, s := range []string{"sshgate.db", "ca/user_ca", "../x", "/etc/passwd", "host_keys/ssh_host_ed25519_key", "host_keys/../../x", "ca//user_ca"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !backupName(name) {
			return
		}
		root := "/data"
		p := filepath.Join(root, filepath.FromSlash(name))
		if rel, err := filepath.Rel(root, p); err != nil || rel != filepath.Clean(filepath.FromSlash(name)) || filepath.IsAbs(name) || len(rel) >= 2 && rel[:2] == ".." {
			t.Fatalf("backupName accepted %q, which leaves the data directory (%s)", name, p)
		}
	})
}
