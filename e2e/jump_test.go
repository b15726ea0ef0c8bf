package e2e_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// jumpConfig writes an ssh_config in which host "gate" is c's login at the
// gate and every host (the gate and the targets behind it) is checked
// against knownHosts only. OpenSSH passes -F, not -o options, to the ssh
// it runs for -J, so everything lives in the file.
func jumpConfig(t *testing.T, c *harness.Client, knownHosts string) string {
	t.Helper()
	cfg := fmt.Sprintf(`Host gate
    HostName %s
    Port %d
    User %s
Host *
    IdentityFile %s
    IdentitiesOnly yes
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    BatchMode yes
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    ControlMaster no
    ControlPath none
    ConnectTimeout 20
`, c.Host, c.Port, c.User, c.Key, knownHosts)
	path := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// jumpKnownHosts is the gate's own host key plus what `config known-hosts`
// printed for c: the only trust a -J user needs.
func jumpKnownHosts(t *testing.T, g *harness.Gate, c *harness.Client) (path, printed string) {
	t.Helper()
	r := harness.MustRun(t, c.SSHTo("", nil, "config", "known-hosts"), nil, short)
	own, err := os.ReadFile(g.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "known_hosts_jump")
	if err := os.WriteFile(path, append(own, r.Stdout...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, r.Stdout
}

// jumpCmd runs a client tool with no agent (the config file says which key).
func jumpCmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	return cmd
}

func sshJ(cfg string, args ...string) []string {
	return append([]string{"-F", cfg, "-J", "gate"}, args...)
}

// ssh -J through the gate with a host CA: the gate presents itself as the
// target with a host certificate for the target's name, logs the inner
// connection in as the outer one's user and serves it as alice+web+root:
// commands with their exit codes, scp, sftp and rsync, the audit trail
// naming the outer connection. Refused: hosts that are not targets, targets
// the user may not reach, logins the grant does not give, and a client that
// does not trust the gate's host CA for the name.
func TestJumpHostCA(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "scp", "sftp", "rsync")
	w := newCAWorld(t)
	w.gate.Admin(t, "target", "add", "other", "--env", "prod", "--upstream", w.sshd.Addr, "--login", "root")
	alice := w.gate.AddUser(t, "alice")
	w.gate.Admin(t, "grant", "alice", "--target", "web")
	kh, printed := jumpKnownHosts(t, w.gate, alice)
	if !strings.HasPrefix(printed, "@cert-authority web ssh-ed25519 ") || strings.Count(printed, "\n") != 1 {
		t.Fatalf("config known-hosts printed %q, want one @cert-authority line for web", printed)
	}
	if r := harness.MustRun(t, alice.SSHTo("", nil, "config"), nil, short); !strings.Contains(r.Stdout, "#   "+strings.TrimSpace(printed)) {
		t.Errorf("config does not show the known_hosts line:\n%s", r.Stdout)
	}
	cfg := jumpConfig(t, alice, kh)
	run := func(name string, args ...string) harness.Result {
		return harness.Run(jumpCmd(name, args...), nil, short)
	}

	t.Run("command and exit status", func(t *testing.T) {
		r := run("ssh", sshJ(cfg, "root@web", "echo via-jump; whoami; exit 3")...)
		if r.Code != 3 || r.Stdout != "via-jump\nroot\n" {
			t.Fatalf("ssh -J: exit %d stdout %q stderr %q (%v)", r.Code, r.Stdout, r.Stderr, r.Err)
		}
		// The default login: the inner user is the gate user.
		r = run("ssh", sshJ(cfg, "alice@web", "whoami")...)
		if r.Code != 0 || r.Stdout != "root\n" {
			t.Fatalf("ssh -J alice@web: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("scp sftp rsync", func(t *testing.T) {
		dir := t.TempDir()
		data := bytes.Repeat([]byte("jump-bytes-"), 100_000)
		src := filepath.Join(dir, "src.bin")
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		remote := "/tmp/jump-" + fmt.Sprint(time.Now().UnixNano())
		if r := run("scp", "-F", cfg, "-J", "gate", src, "root@web:"+remote+".scp"); r.Code != 0 {
			t.Fatalf("scp -J: exit %d stderr %q", r.Code, r.Stderr)
		}
		back := filepath.Join(dir, "back.bin")
		batch := filepath.Join(dir, "batch")
		os.WriteFile(batch, []byte("get "+remote+".scp "+back+"\n"), 0o600)
		if r := run("sftp", "-F", cfg, "-o", "ProxyJump=gate", "-b", batch, "root@web"); r.Code != 0 {
			t.Fatalf("sftp -J: exit %d stderr %q", r.Code, r.Stderr)
		}
		if got, _ := os.ReadFile(back); !bytes.Equal(got, data) {
			t.Fatalf("sftp -J returned %d bytes, want %d", len(got), len(data))
		}
		rdir := filepath.Join(dir, "site")
		os.MkdirAll(rdir, 0o755)
		os.WriteFile(filepath.Join(rdir, "index.html"), []byte("<p>jump</p>\n"), 0o644)
		if r := run("rsync", "-a", "-e", "ssh -F "+cfg+" -J gate", rdir+"/", "root@web:"+remote+".site/"); r.Code != 0 {
			t.Fatalf("rsync -J: exit %d stderr %q", r.Code, r.Stderr)
		}
		r := run("ssh", sshJ(cfg, "root@web", "cat "+remote+".site/index.html; rm -rf "+remote+".scp "+remote+".site")...)
		if r.Code != 0 || r.Stdout != "<p>jump</p>\n" {
			t.Fatalf("after rsync -J: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("audit names the outer connection", func(t *testing.T) {
		deadline := time.Now().Add(short)
		for {
			a := auditLines(t, w.gate)
			if strings.Contains(a, `"via":"`) && strings.Contains(a, `"type":"target.chosen"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no conn.open event with via in the audit log:\n%s", a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			dest, want string
		}{
			{"root@nosuch", `target "nosuch" not found or not permitted`},
			{"root@other", `target "other" not found or not permitted`},
			{"root@127.0.0.1", `target "127.0.0.1" not found or not permitted`},
			{"root@::1", "port forwarding needs a target"},
		} {
			r := run("ssh", sshJ(cfg, tc.dest, "true")...)
			if r.Code != 255 || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("ssh -J %s: exit %d stderr %q, want 255 and %q", tc.dest, r.Code, r.Stderr, tc.want)
			}
		}
		// A login the grant does not give: served as alice+web+bob, one line.
		r := run("ssh", sshJ(cfg, "bob@web", "true")...)
		if r.Code != 1 || !strings.Contains(r.Stderr, `sshgate: target "web+bob" not found or not permitted`) {
			t.Errorf("ssh -J bob@web: exit %d stderr %q", r.Code, r.Stderr)
		}
		// Without the @cert-authority line the gate is not trusted as web.
		bare := jumpConfig(t, alice, w.gate.KnownHosts)
		r = run("ssh", sshJ(bare, "root@web", "true")...)
		if r.Code != 255 || !strings.Contains(r.Stderr, "Host key verification failed") {
			t.Errorf("ssh -J without the CA line: exit %d stderr %q", r.Code, r.Stderr)
		}
	})
}

// Without a host CA the gate presents its plain host keys as the target:
// `config known-hosts` prints them for the target names and aliases.
func TestJumpPlainKeys(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{})
	if w.gate == nil {
		t.Skip("direct mode: no gate")
	}
	w.gate.Admin(t, "target", "alias", "add", "web-1", "www")
	kh, printed := jumpKnownHosts(t, w.gate, w.alice)
	if !strings.Contains(printed, "web-1,www "+strings.TrimSpace(w.gate.HostKey)) {
		t.Fatalf("config known-hosts printed %q, want web-1,www with the gate's key %q", printed, w.gate.HostKey)
	}
	cfg := jumpConfig(t, w.alice, kh)
	for _, dest := range []string{"root@web-1", "root@www"} {
		r := harness.Run(jumpCmd("ssh", sshJ(cfg, dest, "echo plain; exit 7")...), nil, short)
		if r.Code != 7 || r.Stdout != "plain\n" {
			t.Errorf("ssh -J %s: exit %d stdout %q stderr %q", dest, r.Code, r.Stdout, r.Stderr)
		}
	}
}
