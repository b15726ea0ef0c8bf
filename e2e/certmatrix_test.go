package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/auth/totp"
)

// certRefusedLogged waits for the gate's "user certificate refused" line for
// the certificate with key id keyID, and checks it gives reason.
func certRefusedLogged(t *testing.T, g *harness.Gate, keyID, reason string) {
	t.Helper()
	var last string
	ok := harness.Eventually(short, func() bool {
		for _, line := range strings.Split(g.Stderr.String(), "\n") {
			if strings.Contains(line, "user certificate refused") && strings.Contains(line, "key_id="+keyID) {
				last = line
				if strings.Contains(line, reason) {
					return true
				}
			}
		}
		return false
	})
	if !ok {
		t.Errorf("no log line refusing key id %s for %q; last seen: %q", keyID, reason, last)
	}
}

// sshKeygenSign makes a fresh key in dir and signs it with the CA private key
// ca using real ssh-keygen -s and args; it returns the key and certificate paths.
func sshKeygenSign(t *testing.T, dir, ca, name string, args ...string) (key, cert string) {
	t.Helper()
	key, _ = harness.Keygen(t, dir, "id_"+name)
	a := append([]string{"-q", "-s", ca, "-I", "m-" + name}, args...)
	if out, err := exec.Command("ssh-keygen", append(a, key+".pub")...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -s %v: %v %s", args, err, out)
	}
	return key, key + "-cert.pub"
}

// The certificate matrix (after OpenSSH's regress/cert-userkey.sh): user
// certificates made by ssh-keygen -s from a CA the gate trusts (ca
// trust-user-ca), offered by the real ssh client; each row is accepted or
// refused with its reason in the gate's log.
func TestCertificateMatrix(t *testing.T) {
	t.Parallel()
	w := newCAWorld(t)
	base := w.user(t, "alice", "web")
	dir := t.TempDir()
	extCA, _ := harness.Keygen(t, dir, "ext_ca")
	w.gate.Admin(t, "ca", "trust-user-ca", extCA+".pub")
	revokedCA, _ := harness.Keygen(t, dir, "revoked_ca")
	w.gate.Admin(t, "ca", "trust-user-ca", revokedCA+".pub")
	untrustedCA, _ := harness.Keygen(t, dir, "untrusted_ca")
	rsaCA := filepath.Join(dir, "rsa_ca")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", rsaCA).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen rsa: %v %s", err, out)
	}
	w.gate.Admin(t, "ca", "trust-user-ca", rsaCA+".pub")

	type row struct {
		name, ca string
		args     []string
		from     string // ssh -b
		ok       bool
		reason   string // in the gate's refusal line
	}
	valid := []string{"-n", "alice", "-V", "-5m:+1h"}
	rows := []row{
		{name: "valid", ca: extCA, args: valid, ok: true},
		{name: "alice-among-principals", ca: extCA, args: []string{"-n", "bob,alice"}, ok: true},
		{name: "wrong-principal", ca: extCA, args: []string{"-n", "foo,bar"}, reason: `not in the set of valid principals`},
		{name: "star-principal-is-literal", ca: extCA, args: []string{"-n", "*"}, reason: `not in the set of valid principals`},
		{name: "empty-principals", ca: extCA, reason: "no principals"},
		{name: "expired", ca: extCA, args: []string{"-n", "alice", "-V", "19800101:19900101"}, reason: "cert has expired"},
		{name: "not-yet-valid", ca: extCA, args: []string{"-n", "alice", "-V", "20300101:20320101"}, reason: "cert is not yet valid"},
		// OpenSSH 9.2's ssh does not even offer a host certificate as a user
		// one; the gate's own refusal ("is not a user certificate") is
		// tested in internal/ca.
		{name: "host-cert", ca: extCA, args: []string{"-h", "-n", "alice"}},
		{name: "unknown-critical-option", ca: extCA, args: []string{"-n", "alice", "-O", "critical:foo@example.com=x"}, reason: `unsupported critical option \"foo@example.com\"`},
		{name: "untrusted-ca", ca: untrustedCA, args: valid, reason: "signed by an untrusted CA"},
		{name: "sha1-ca-signature", ca: rsaCA, args: []string{"-t", "ssh-rsa", "-n", "alice"}, reason: "CA signature algorithm not accepted"},
		{name: "rsa-sha2-ca-signature", ca: rsaCA, args: []string{"-t", "rsa-sha2-512", "-n", "alice"}, ok: true},
		{name: "revoked-serial", ca: extCA, args: []string{"-n", "alice", "-z", "77001"}, reason: "serial 77001 or its key or CA is revoked"},
		{name: "revoked-key", ca: extCA, args: valid, reason: "or its key or CA is revoked"},
		{name: "revoked-ca", ca: revokedCA, args: valid, reason: "or its key or CA is revoked"},
		{name: "source-address-other", ca: extCA, args: []string{"-n", "alice", "-O", "source-address=127.0.0.1/32"}, from: "127.0.0.2",
			reason: `source-address \"127.0.0.1/32\" does not allow 127.0.0.2`},
		{name: "source-address-same", ca: extCA, args: []string{"-n", "alice", "-O", "source-address=127.0.0.1/32"}, from: "127.0.0.1", ok: true},
		{name: "source-address-list", ca: extCA, args: []string{"-n", "alice", "-O", "source-address=10.0.0.0/8,127.0.0.2"}, from: "127.0.0.2", ok: true},
	}
	keys := map[string][2]string{}
	for _, r := range rows {
		k, c := sshKeygenSign(t, dir, r.ca, r.name, r.args...)
		keys[r.name] = [2]string{k, c}
	}
	w.gate.Admin(t, "ca", "revoke", "77001")
	w.gate.Admin(t, "ca", "revoke", keys["revoked-key"][0]+".pub")
	w.gate.Admin(t, "ca", "revoke", revokedCA+".pub")

	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			c := withCert(base, keys[r.name][0], keys[r.name][1])
			from := r.from
			if from == "" {
				from = "127.0.0.1"
			}
			res := harness.Run(c.SSH("-b", from, c.Dest("web"), "echo in-"+r.name), nil, short)
			if r.ok {
				if res.Code != 0 || res.Stdout != "in-"+r.name+"\n" {
					t.Fatalf("refused: exit %d %q %q", res.Code, res.Stdout, res.Stderr)
				}
				if !w.gate.Stderr.WaitFor("key_id=m-"+r.name, short) || !w.gate.LogContains("user certificate accepted") {
					t.Error("the gate did not log the accepted certificate")
				}
				return
			}
			if res.Code != 255 || strings.Contains(res.Stdout, "in-") || !strings.Contains(res.Stderr, "Permission denied") {
				t.Fatalf("accepted: exit %d %q %q", res.Code, res.Stdout, res.Stderr)
			}
			if r.reason != "" {
				certRefusedLogged(t, w.gate, "m-"+r.name, r.reason)
			}
		})
	}

	t.Run("CA key used as a plain user key", func(t *testing.T) {
		res := harness.Run(base.WithKey(extCA).SSHTo("web", nil, "echo in"), nil, short)
		if res.Code != 255 || !strings.Contains(res.Stderr, "Permission denied") {
			t.Fatalf("exit %d %q %q", res.Code, res.Stdout, res.Stderr)
		}
	})

	// force-command survives the second factor (CVE-2026-39828: x/crypto
	// once dropped Permissions across a partial success): users enrolled in
	// TOTP, a certificate forcing a command; after the code, a shell, a
	// command and the sftp subsystem each run the forced command only.
	t.Run("force-command after the TOTP code", func(t *testing.T) {
		marks := filepath.Join(t.TempDir(), "forced")
		forced := fmt.Sprintf("echo run >> %s; echo forced-by-cert", marks)
		for i, mode := range []string{"exec", "shell", "subsystem"} {
			user := "tina" + mode
			c := w.user(t, user, "web")
			secret := enrolTOTP(t, w.gate, user)
			key, cert := sshKeygenSign(t, dir, extCA, "force-"+mode, "-n", user, "-O", "force-command="+forced)
			cl := withCert(c, key, cert).WithOpts("BatchMode=no", "KbdInteractiveAuthentication=yes", "NumberOfPasswordPrompts=1")
			var cmd *exec.Cmd
			switch mode {
			case "exec":
				cmd = cl.SSHTo("web", nil, "echo asked-$((40+2))")
			case "shell":
				cmd = cl.SSHTo("web", []string{"-tt"})
			case "subsystem":
				cmd = cl.SSHTo("web", []string{"-s"}, "sftp")
			}
			s := startPTY(t, cmd, 24, 80)
			var code string
			asked := false
			deadline := time.After(short)
		wait:
			for {
				if !asked && strings.Contains(s.out.String(), "Verification code:") {
					asked = true
					awayFromStepEdge()
					code, _ = totp.Code(secret, time.Now())
					fmt.Fprintf(s.ptmx, "%s\r", code)
					// What a shell would run, were one started.
					fmt.Fprint(s.ptmx, "echo asked-$((40+2))\r")
				}
				select {
				case err := <-s.done:
					if err != nil {
						t.Errorf("%s: ssh: %v", mode, err)
					}
					break wait
				case <-deadline:
					t.Fatalf("%s: ssh still running after %s: %q", mode, short, s.out.String())
				case <-time.After(20 * time.Millisecond):
				}
			}
			out := s.out.String()
			if !asked || !strings.Contains(out, "forced-by-cert") || strings.Contains(out, "asked-42") {
				t.Errorf("%s: asked for a code %v, output %q", mode, asked, out)
			}
			b, _ := os.ReadFile(marks)
			if n := strings.Count(string(b), "run\n"); n != i+1 {
				t.Errorf("%s: the forced command ran %d times in all, want %d", mode, n, i+1)
			}
			if !w.gate.Stderr.WaitFor("key_id=m-force-"+mode, short) {
				t.Errorf("%s: certificate login not logged", mode)
			}
			if w.gate.LogContains(secret) || w.gate.LogContains("="+code) {
				t.Errorf("%s: the TOTP secret or code is in the gate's log", mode)
			}
		}
		if !w.gate.LogContains("cert+totp") {
			t.Error("no login logged with method cert+totp")
		}
	})
}
