package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// Ansible (Debian's ansible-core) through a default gate with both its
// OpenSSH and its paramiko connection plugins: the command module runs id
// on the target, the copy module writes a file there. Host keys are
// checked against the gate's known_hosts line in both.
func TestAnsible(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	harness.RequireTools(t, "ansible", "/usr/lib/python3/dist-packages/paramiko/__init__.py")
	w := newWorld(t, worldOptions{})
	for _, plugin := range []string{"ssh", "paramiko"} {
		t.Run(plugin, func(t *testing.T) {
			home := t.TempDir()
			if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
				t.Fatal(err)
			}
			kh, err := os.ReadFile(w.alice.KnownHosts)
			if err != nil {
				t.Fatal(err)
			}
			inv := filepath.Join(home, "hosts")
			line := fmt.Sprintf("web ansible_host=%s ansible_port=%d ansible_user=alice+web-1 ansible_ssh_private_key_file=%s ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args='-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'\n",
				w.gate.Host, w.gate.Port, w.alice.Key, w.alice.KnownHosts)
			if err := os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), kh, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(inv, []byte(line), 0o600); err != nil {
				t.Fatal(err)
			}
			ansible := func(args ...string) harness.Result {
				c := exec.Command("ansible", append([]string{"all", "-i", inv, "-c", plugin}, args...)...)
				c.Env = append(os.Environ(), "HOME="+home, "ANSIBLE_HOST_KEY_CHECKING=True",
					"ANSIBLE_PARAMIKO_LOOK_FOR_KEYS=False", "ANSIBLE_LOCAL_TEMP="+filepath.Join(home, "tmp"),
					"ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0",
					// No ControlPersist master left holding a gate session after the test.
					"ANSIBLE_SSH_ARGS=-o ControlMaster=no")
				return harness.Run(c, nil, 3*short)
			}
			r := ansible("-m", "command", "-a", "id")
			if r.Code != 0 || !strings.Contains(r.Stdout, "uid=0(root)") {
				t.Fatalf("ansible -c %s -m command -a id: exit %d stdout %q stderr %q", plugin, r.Code, r.Stdout, r.Stderr)
			}
			src := filepath.Join(home, "copy.txt")
			content := "copied by ansible " + plugin + "\n"
			if err := os.WriteFile(src, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			dest := fmt.Sprintf("/tmp/ansible-%s-%d.txt", plugin, w.gate.Port)
			r = ansible("-m", "copy", "-a", "src="+src+" dest="+dest)
			if r.Code != 0 {
				t.Fatalf("ansible -c %s -m copy: exit %d stdout %q stderr %q", plugin, r.Code, r.Stdout, r.Stderr)
			}
			r = harness.MustRun(t, w.alice.SSHTo("web-1", nil, "cat "+dest+"; rm -f "+dest), nil, short)
			if r.Stdout != content {
				t.Errorf("copied file holds %q", r.Stdout)
			}
		})
	}
}
