package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// lftp over SFTP (sftp://) and FISH (fish://) through the gate, the user
// given with -u as lftp needs: a binary file goes up and comes back
// byte-exact each way, and the audit holds both transfers with their
// sha256.
func TestLftpSFTPAndFISH(t *testing.T) {
	gateOnly(t)
	harness.RequireTools(t, "lftp")
	t.Parallel()
	w := newWorld(t, worldOptions{})
	log := &auditLog{path: filepath.Join(w.gate.DataDir, "audit", "audit.jsonl")}
	home, remote := t.TempDir(), t.TempDir()
	conf := filepath.Join(home, "ssh_config")
	os.WriteFile(conf, []byte(fmt.Sprintf("Host *\n  IdentityFile %s\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  IdentitiesOnly yes\n",
		w.alice.Key, w.alice.KnownHosts)), 0o600)
	prog := fmt.Sprintf("ssh -a -x -F %s", conf)
	os.WriteFile(filepath.Join(home, ".lftprc"), []byte(fmt.Sprintf("set net:max-retries 1\nset fish:connect-program %q\nset sftp:connect-program %q\n", prog, prog)), 0o600)
	for _, proto := range []string{"sftp", "fish"} {
		t.Run(proto, func(t *testing.T) {
			src := filepath.Join(home, proto+".up")
			sum := randomFile(t, src, 300_000+len(proto))
			dst, back := filepath.Join(remote, proto+".bin"), filepath.Join(home, proto+".back")
			// The get is the last command: lftp closes an SFTP read handle
			// only at its next command, so it exits with the handle open,
			// and the download, read to its end, must still be audited
			// whole with its hash.
			cmd := exec.Command("lftp", "-u", w.alice.Login("web-1")+",", "-p", strconv.Itoa(w.alice.Port),
				"-e", fmt.Sprintf("put %s -o %s; get %s -o %s; exit", src, dst, dst, back), proto+"://"+w.alice.Host)
			cmd.Env = append(os.Environ(), "HOME="+home)
			harness.MustRun(t, cmd, nil, short)
			for _, p := range []string{dst, back} {
				b, err := os.ReadFile(p)
				if err != nil || sha256Hex(b) != sum {
					t.Fatalf("%s: %d bytes (%v), not byte-exact", p, len(b), err)
				}
			}
			var up, down bool
			for _, e := range log.next(t) {
				if e["type"] != "file" || e["path"] != dst || e["sha256"] != sum || e["result"] != "ok" {
					continue
				}
				up = up || e["direction"] == "upload"
				down = down || e["direction"] == "download"
			}
			if !up || !down {
				t.Errorf("audit: upload %v download %v of %s with sha256 %s", up, down, dst, sum)
			}
		})
	}
}
