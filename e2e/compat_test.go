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

// Clients other than OpenSSH through a default gate, each with the
// cipher it picks from the gate's offer to it. (OpenSSH's own cipher is
// checked in TestOpenSSHGetsAESGCM.)

// paramikoScript runs one command through the gate and prints its output,
// then the exit status and the negotiated cipher on the last line.
const paramikoScript = `
import sys, paramiko
host, port, user, key, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
c = paramiko.SSHClient()
c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
c.connect(host, port=port, username=user, pkey=paramiko.Ed25519Key.from_private_key_file(key),
          allow_agent=False, look_for_keys=False, timeout=30)
_, out, _ = c.exec_command(cmd)
data = out.read().decode()
status = out.channel.recv_exit_status()
sys.stdout.write(data)
print("status=%d cipher=%s" % (status, c.get_transport().remote_cipher))
c.close()
`

func TestParamiko(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	// Debian's python3, whatever else is first on $PATH: python3-paramiko is installed for it.
	harness.RequireTools(t, "/usr/bin/python3", "/usr/lib/python3/dist-packages/paramiko/__init__.py")
	w := newWorld(t, worldOptions{})
	script := filepath.Join(t.TempDir(), "p.py")
	if err := os.WriteFile(script, []byte(paramikoScript), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/python3", script, w.gate.Host, fmt.Sprint(w.gate.Port), "alice+web-1", w.alice.Key,
		"echo paramiko-$((40+2)); exit 3").CombinedOutput()
	if err != nil {
		t.Fatalf("paramiko: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || lines[0] != "paramiko-42" || !strings.HasPrefix(lines[1], "status=3 cipher=") {
		t.Fatalf("paramiko output %q", out)
	}
	if c := strings.TrimPrefix(lines[1], "status=3 cipher="); !strings.HasPrefix(c, "aes") {
		t.Errorf("paramiko negotiated %q", c)
	}
}

func TestDropbear(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	harness.RequireTools(t, "dbclient", "dropbearconvert")
	w := newWorld(t, worldOptions{})
	key := filepath.Join(t.TempDir(), "id_dropbear")
	if out, err := exec.Command("dropbearconvert", "openssh", "dropbear", w.alice.Key, key).CombinedOutput(); err != nil {
		t.Fatalf("dropbearconvert: %v\n%s", err, out)
	}
	cmd := exec.Command("dbclient", "-y", "-y", "-i", key, "-p", fmt.Sprint(w.gate.Port), "-v",
		"alice+web-1@"+w.gate.Host, "echo dropbear-$((40+2)); exit 4")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 4 {
		t.Fatalf("dbclient: %v (want exit 4)\nstdout %q\nstderr %s", err, stdout.String(), stderr.String())
	}
	if stdout.String() != "dropbear-42\n" {
		t.Fatalf("dbclient stdout %q", stdout.String())
	}
}

// A stock OpenSSH client still gets AES-GCM from a default gate.
func TestOpenSSHGetsAESGCM(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	out, err := w.alice.SSHTo("web-1", []string{"-v"}, "true").CombinedOutput()
	if err != nil {
		t.Fatalf("ssh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "kex: server->client cipher: aes128-gcm@openssh.com") {
		t.Fatalf("cipher not aes128-gcm:\n%s", out)
	}
}
