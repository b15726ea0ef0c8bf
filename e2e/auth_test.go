package e2e_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

func TestAuthentication(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})

	denied := func(t *testing.T, what string, r harness.Result) {
		t.Helper()
		if r.Code != 255 || r.Err != nil || !strings.Contains(r.Stderr, "Permission denied") {
			t.Errorf("%s: exit %d (%v) stderr %q, want 255 and Permission denied", what, r.Code, r.Err, r.Stderr)
		}
		if r.Stdout != "" {
			t.Errorf("%s: stdout %q", what, r.Stdout)
		}
	}

	t.Run("unknown user", func(t *testing.T) {
		t.Parallel()
		denied(t, "mallory", harness.Run(w.alice.WithUser("mallory").SSHTo("web-1", nil, "true"), nil, short))
		denied(t, "mallory, no target", harness.Run(w.alice.WithUser("mallory").SSHTo("", nil, "ls"), nil, short))
	})

	t.Run("wrong key", func(t *testing.T) {
		t.Parallel()
		other, _ := harness.Keygen(t, t.TempDir(), "id_other")
		denied(t, "alice with another key", harness.Run(w.alice.WithKey(other).SSHTo("web-1", nil, "true"), nil, short))
	})

	t.Run("password", func(t *testing.T) {
		t.Parallel()
		harness.RequireTools(t, "sshpass")
		w.gate.AdminStdin(t, "s3cret-Passw0rd\n", "user", "add", "bob", "--password-stdin")
		w.gate.Admin(t, "grant", "bob", "--target", "web-1", "--login", "root")
		bob := w.alice.WithUser("bob").WithPassword("s3cret-Passw0rd")
		r := harness.MustRun(t, bob.SSHTo("web-1", nil, "echo hi-bob"), nil, short)
		if r.Stdout != "hi-bob\n" {
			t.Errorf("password login: stdout %q", r.Stdout)
		}
		bad := harness.Run(w.alice.WithUser("bob").WithPassword("wrong").SSHTo("web-1", nil, "echo hi"), nil, short)
		if bad.Code == 0 || bad.Err != nil || strings.Contains(bad.Stdout, "hi") {
			t.Errorf("wrong password: exit %d (%v) stdout %q", bad.Code, bad.Err, bad.Stdout)
		}
		// The same password over keyboard-interactive alone (as PuTTY and
		// PAM-minded clients send it): in with the right one, out with a
		// wrong one.
		ki := func(pw string) harness.Result {
			args := append([]string{"-p", pw, "ssh", "-o", "PreferredAuthentications=keyboard-interactive",
				"-o", "PasswordAuthentication=no"}, bob.Options()...)
			args = append(args, "-p", fmt.Sprint(bob.Port), bob.Dest("web-1"), "echo hi-ki")
			return harness.Run(exec.Command("sshpass", args...), nil, short)
		}
		if r := ki("s3cret-Passw0rd"); r.Code != 0 || r.Stdout != "hi-ki\n" {
			t.Errorf("password over keyboard-interactive: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		if r := ki("wrong"); r.Code == 0 || strings.Contains(r.Stdout, "hi-ki") {
			t.Errorf("wrong password over keyboard-interactive: exit %d stdout %q", r.Code, r.Stdout)
		}
		// A key user's password attempt fails too.
		r = harness.Run(w.alice.WithPassword("s3cret-Passw0rd").SSHTo("web-1", nil, "echo hi"), nil, short)
		if r.Code == 0 || strings.Contains(r.Stdout, "hi") {
			t.Errorf("alice with bob's password: exit %d stdout %q", r.Code, r.Stdout)
		}
	})
}
