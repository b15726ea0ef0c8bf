package e2e_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// PuTTY 0.78 (Debian's putty-tools) through a default gate: plink's
// command and exit status with a key puttygen converted and with a
// password over keyboard-interactive, pscp both ways byte-exact, a psftp
// batch. The gate's host key is pinned with -hostkey, never accepted
// blindly.
func TestPuTTY(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	harness.RequireTools(t, "plink", "pscp", "psftp", "puttygen")
	w := newWorld(t, worldOptions{})
	dir := t.TempDir()
	ppk := filepath.Join(dir, "alice.ppk")
	harness.MustRun(t, exec.Command("puttygen", w.alice.Key, "-o", ppk, "-O", "private"), nil, short)
	fp := strings.Fields(harness.MustRun(t, exec.Command("ssh-keygen", "-lf",
		filepath.Join(w.gate.DataDir, "host_keys", "ssh_host_ed25519_key.pub")), nil, short).Stdout)[1]
	port := fmt.Sprint(w.gate.Port)
	// HOME is empty: no saved sessions, no cached host keys.
	env := append(os.Environ(), "HOME="+t.TempDir())
	putty := func(tool string, args ...string) *exec.Cmd {
		c := exec.Command(tool, append([]string{"-batch", "-hostkey", fp, "-P", port}, args...)...)
		c.Env = env
		return c
	}

	t.Run("plink publickey", func(t *testing.T) {
		r := harness.Run(putty("plink", "-v", "-i", ppk, "-l", "alice+web-1", w.gate.Host, "echo plink-$((40+2)); exit 5"), nil, short)
		if r.Code != 5 || r.Stdout != "plink-42\n" {
			t.Fatalf("plink: exit %d stdout %q stderr %s", r.Code, r.Stdout, r.Stderr)
		}
		if !strings.Contains(r.Stderr, "Offered public key") && !strings.Contains(r.Stderr, "public key") {
			t.Errorf("plink did not log in with its key:\n%s", r.Stderr)
		}
	})

	t.Run("plink password keyboard-interactive", func(t *testing.T) {
		w.gate.AdminStdin(t, "s3cret-Passw0rd\n", "user", "add", "bob", "--password-stdin")
		w.gate.Admin(t, "grant", "bob", "--target", "web-1", "--login", "root")
		r := harness.Run(putty("plink", "-v", "-pw", "s3cret-Passw0rd", "-l", "bob+web-1", w.gate.Host, "echo kbd-ok"), nil, short)
		if r.Code != 0 || r.Stdout != "kbd-ok\n" {
			t.Fatalf("plink -pw: exit %d stdout %q stderr %s", r.Code, r.Stdout, r.Stderr)
		}
		if !strings.Contains(r.Stderr, "keyboard-interactive") {
			t.Errorf("plink did not use keyboard-interactive:\n%s", r.Stderr)
		}
		bad := harness.Run(putty("plink", "-pw", "wrong", "-l", "bob+web-1", w.gate.Host, "echo kbd-ok"), nil, short)
		if bad.Code == 0 || bad.Stdout != "" {
			t.Errorf("plink wrong password: exit %d stdout %q", bad.Code, bad.Stdout)
		}
	})

	t.Run("pscp", func(t *testing.T) {
		data := make([]byte, 3<<20+17)
		rand.Read(data)
		src, back := filepath.Join(dir, "up.bin"), filepath.Join(dir, "back.bin")
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		remote := "alice+web-1@" + w.gate.Host + ":/tmp/pscp-" + port + ".bin"
		harness.MustRun(t, putty("pscp", "-i", ppk, "-q", src, remote), nil, short)
		harness.MustRun(t, putty("pscp", "-i", ppk, "-q", remote, back), nil, short)
		if got, _ := os.ReadFile(back); !bytes.Equal(got, data) {
			t.Fatalf("pscp round trip: %d bytes back of %d", len(got), len(data))
		}
	})

	t.Run("psftp batch", func(t *testing.T) {
		local := filepath.Join(dir, "psftp.txt")
		if err := os.WriteFile(local, []byte("psftp batch\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		rdir := "/tmp/psftp-" + port
		batch := filepath.Join(dir, "batch")
		script := fmt.Sprintf("mkdir %s\ncd %s\nput %s p.txt\nmv p.txt q.txt\nls\nget q.txt %s.back\nrm q.txt\ncd /\nrmdir %s\n", rdir, rdir, local, local, rdir)
		if err := os.WriteFile(batch, []byte(script), 0o600); err != nil {
			t.Fatal(err)
		}
		r := harness.MustRun(t, putty("psftp", "-i", ppk, "-b", batch, "-be", "alice+web-1@"+w.gate.Host), nil, short)
		if !strings.Contains(r.Stdout, "q.txt") {
			t.Errorf("psftp ls: %q", r.Stdout)
		}
		if got, _ := os.ReadFile(local + ".back"); string(got) != "psftp batch\n" {
			t.Errorf("psftp get: %q", got)
		}
	})
}
