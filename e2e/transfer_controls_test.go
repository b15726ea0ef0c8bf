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

// --upload-only and --download-only with the real clients against a real
// sshd: sftp, scp in both modes, rsync and lftp's FISH, each way. The
// allowed direction moves the file byte for byte; the forbidden one fails
// with a non-zero exit and a message the client shows ("Permission denied"
// from the SFTP status, or the gate's one line).
func TestGrantTransferDirection(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "scp", "sftp", "rsync", "lftp")
	w := newWorld(t, worldOptions{})
	if w.gate == nil {
		t.Skip("direct mode: no gate")
	}
	user := func(name string, flags ...string) *harness.Client {
		c := w.gate.AddUser(t, name)
		w.gate.Admin(t, append([]string{"grant", name, "--target", "web-1", "--login", "root"}, flags...)...)
		return c
	}
	upOnly := user("uponly", "--upload-only")
	downOnly := user("downonly", "--download-only")

	// Several SFTP packets' worth, so the gate's replies and the relayed
	// data interleave.
	payload := make([]byte, 300<<10)
	rand.Read(payload)
	local, remote := t.TempDir(), t.TempDir()
	src := filepath.Join(local, "src.bin")
	seed := filepath.Join(remote, "seed.bin")
	os.WriteFile(src, payload, 0o600)
	os.WriteFile(seed, payload, 0o600)

	same := func(t *testing.T, what, path string) {
		t.Helper()
		if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, payload) {
			t.Errorf("%s: %s holds %d bytes (%v), want the %d sent", what, path, len(b), err, len(payload))
		}
	}
	absent := func(t *testing.T, what, path string) {
		t.Helper()
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s: a refused transfer created %s", what, path)
		}
	}
	ok := func(t *testing.T, what string, r harness.Result) {
		t.Helper()
		if r.Code != 0 || r.Err != nil {
			t.Errorf("%s: exit %d %v stderr %q, want success", what, r.Code, r.Err, r.Stderr)
		}
	}
	refused := func(t *testing.T, what string, r harness.Result, want string) {
		t.Helper()
		if r.Code == 0 || r.Err != nil {
			t.Errorf("%s: exit %d %v, want a refusal", what, r.Code, r.Err)
		}
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("%s: stderr %q, want %q", what, r.Stderr, want)
		}
		noGoError(t, what, r.Stderr)
		t.Logf("%s refused: %q", what, r.Stderr)
	}
	n := 0
	name := func(c *harness.Client, what string) string {
		n++
		return fmt.Sprintf("%s-%s-%d.bin", c.Login("web-1"), what, n)
	}

	sftp := func(c *harness.Client, cmd string) harness.Result {
		batch := filepath.Join(t.TempDir(), "batch")
		os.WriteFile(batch, []byte(cmd+"\n"), 0o600)
		return harness.Run(c.SFTP("-b", batch, c.Dest("web-1")), nil, short)
	}
	scp := func(c *harness.Client, legacy bool, from, to string) harness.Result {
		args := []string{from, to}
		if legacy {
			args = append([]string{"-O"}, args...)
		}
		return harness.Run(c.SCP(args...), nil, short)
	}
	rsync := func(c *harness.Client, from, to string) harness.Result {
		return harness.Run(c.Rsync(from, to), nil, short)
	}
	fish := func(c *harness.Client, cmd string) harness.Result {
		// lftp runs its connect program with its own host arguments; the
		// wrapper keeps only the remote command and reaches the gate.
		wrapper := filepath.Join(t.TempDir(), "fish-ssh")
		script := fmt.Sprintf("#!/bin/sh\nfor last; do :; done\nexec %s %s \"$last\"\n", c.SSHCommandLine(), harness.ShellQuote(c.Dest("web-1")))
		os.WriteFile(wrapper, []byte(script), 0o755)
		cmds := fmt.Sprintf("set fish:connect-program %s; set net:max-retries 1; set net:reconnect-interval-base 1; open fish://x@127.0.0.1; %s", wrapper, cmd)
		return harness.Run(exec.Command("lftp", "-c", cmds), nil, short)
	}
	const upLine, downLine = "sshgate: this grant allows only uploads to web-1", "sshgate: this grant allows only downloads from web-1"

	for _, tc := range []struct {
		name    string
		c       *harness.Client
		upload  bool // the allowed direction
		refusal string
	}{{"upload-only", upOnly, true, upLine}, {"download-only", downOnly, false, downLine}} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			// allowed and forbidden runs, each way: what it does, where the
			// result lands (to check), the run.
			up := func(what string, run func(dst string) harness.Result) {
				dst := filepath.Join(remote, name(c, what))
				r := run(dst)
				if tc.upload {
					ok(t, what+" upload", r)
					same(t, what+" upload", dst)
					return
				}
				refused(t, what+" upload", r, map[bool]string{true: "Permission denied", false: tc.refusal}[strings.HasPrefix(what, "sftp") || what == "scp"])
				absent(t, what+" upload", dst)
			}
			down := func(what string, run func(dst string) harness.Result) {
				dst := filepath.Join(local, name(c, what))
				r := run(dst)
				if !tc.upload {
					ok(t, what+" download", r)
					same(t, what+" download", dst)
					return
				}
				refused(t, what+" download", r, map[bool]string{true: "Permission denied", false: tc.refusal}[strings.HasPrefix(what, "sftp") || what == "scp"])
				if b, err := os.ReadFile(dst); err == nil && len(b) > 0 {
					t.Errorf("%s download: a refused transfer wrote %d bytes", what, len(b))
				}
			}
			up("sftp", func(dst string) harness.Result { return sftp(c, "put "+src+" "+dst) })
			down("sftp", func(dst string) harness.Result { return sftp(c, "get "+seed+" "+dst) })
			up("scp", func(dst string) harness.Result { return scp(c, false, src, c.Dest("web-1")+":"+dst) })
			down("scp", func(dst string) harness.Result { return scp(c, false, c.Dest("web-1")+":"+seed, dst) })
			up("scp-O", func(dst string) harness.Result { return scp(c, true, src, c.Dest("web-1")+":"+dst) })
			down("scp-O", func(dst string) harness.Result { return scp(c, true, c.Dest("web-1")+":"+seed, dst) })
			up("rsync", func(dst string) harness.Result { return rsync(c, src, c.Dest("web-1")+":"+dst) })
			down("rsync", func(dst string) harness.Result { return rsync(c, c.Dest("web-1")+":"+seed, dst) })

			// What stays allowed either way: listing and stat.
			r := sftp(c, "ls -l "+remote)
			ok(t, "sftp ls", r)
			if !strings.Contains(r.Stdout, "seed.bin") {
				t.Errorf("sftp ls: %q lacks seed.bin", r.Stdout)
			}
			// Changing files is an upload: refused under --download-only.
			dir := filepath.Join(remote, name(c, "dir"))
			if r := sftp(c, "mkdir "+dir); tc.upload {
				ok(t, "sftp mkdir", r)
			} else {
				refused(t, "sftp mkdir", r, "Permission denied")
				absent(t, "sftp mkdir", dir)
			}

			// FISH is a shell its client drives: refused whole, either way.
			for _, cmd := range []string{"put " + src + " -o " + filepath.Join(remote, name(c, "fish")), "get " + seed + " -o " + filepath.Join(local, name(c, "fish"))} {
				r := fish(c, cmd)
				refused(t, "lftp "+cmd, r, tc.refusal+", which a FISH session cannot be held to")
			}
		})
	}

	// Through ssh -J the inner connection is served as USER+TARGET: the
	// same controls.
	t.Run("jump", func(t *testing.T) {
		kh, _ := jumpKnownHosts(t, w.gate, downOnly)
		cfg := jumpConfig(t, downOnly, kh)
		sftpJ := func(cmd string) harness.Result {
			return harness.Run(jumpCmd("sftp", "-F", cfg, "-J", "gate", "-b", "-", "root@web-1"), []byte(cmd+"\n"), short)
		}
		dst := filepath.Join(local, "jump-get.bin")
		ok(t, "sftp -J get", sftpJ("get "+seed+" "+dst))
		same(t, "sftp -J get", dst)
		put := filepath.Join(remote, "jump-put.bin")
		refused(t, "sftp -J put", sftpJ("put "+src+" "+put), "Permission denied")
		absent(t, "sftp -J put", put)
		r := harness.Run(jumpCmd("scp", "-O", "-F", cfg, "-J", "gate", src, "root@web-1:"+put), nil, short)
		refused(t, "scp -O -J upload", r, downLine)
	})

	for _, reason := range []string{"upload_only", "download_only"} {
		if !harness.Eventually(short, func() bool { return auditHas(t, w.gate, "session.denied", reason) }) {
			t.Errorf("no session.denied audit event with reason %s", reason)
		}
		if !harness.Eventually(short, func() bool { return auditHasDenied(t, w.gate, reason) }) {
			t.Errorf("no denied sftp file event with reason %s", reason)
		}
	}
}

// auditHasDenied reports whether the audit file has a denied SFTP file
// operation with reason.
func auditHasDenied(t *testing.T, g *harness.Gate, reason string) bool {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(g.DataDir, "audit", "audit.jsonl"))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"type":"file"`) && strings.Contains(l, `"protocol":"sftp"`) &&
			strings.Contains(l, `"result":"denied"`) && strings.Contains(l, `"reason":"`+reason+`"`) {
			return true
		}
	}
	return false
}

// The same controls on a docker target, whose SFTP is the agent's
// (pkg/sftp), not OpenSSH's sftp-server.
func TestDockerTransferDirection(t *testing.T) {
	w := newDockerWorld(t)
	name := w.target(t, "xfer", "--docker", harness.TestImage, "--user", "1000:1000")
	want := w.ssh(t, name, nil, "cat /etc/passwd")
	if want.Code != 0 || want.Stdout == "" {
		t.Fatalf("cat: exit %d %q", want.Code, want.Stderr)
	}
	local := t.TempDir()
	src := filepath.Join(local, "src.txt")
	os.WriteFile(src, []byte(want.Stdout), 0o600)
	for _, tc := range []struct {
		flag, batch string
		upload      bool
	}{
		{"--upload-only", "put " + src + " /tmp/up\nls -l /tmp/up\nget /tmp/up " + local + "/up.back\n", true},
		{"--download-only", "get /etc/passwd " + local + "/passwd\nls -l /etc/passwd\nput " + src + " /tmp/up\n", false},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			user := strings.TrimPrefix(tc.flag, "--")
			c := w.gate.AddUser(t, user)
			w.gate.Admin(t, "grant", user, "--target", name, tc.flag)
			// sftp -b stops at the first failing command: the allowed one
			// and the listing run first.
			r := harness.Run(c.SFTP("-b", "-", c.Dest(name)), []byte(tc.batch), short)
			if r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied") {
				t.Errorf("exit %d stderr %q, want the last command refused", r.Code, r.Stderr)
			}
			if tc.upload {
				if !strings.Contains(r.Stdout, "/tmp/up") {
					t.Errorf("upload or listing failed: stdout %q stderr %q", r.Stdout, r.Stderr)
				}
				if _, err := os.Stat(filepath.Join(local, "up.back")); err == nil {
					t.Error("a refused download wrote its file")
				}
				return
			}
			if b, err := os.ReadFile(filepath.Join(local, "passwd")); err != nil || string(b) != want.Stdout {
				t.Errorf("download: %q %v, want %q", b, err, want.Stdout)
			}
		})
	}
}
