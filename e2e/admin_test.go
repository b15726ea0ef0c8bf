package e2e_test

import (
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// Admin commands with bad arguments exit 2, say why on stderr and change
// nothing; the running gate keeps serving.
func TestAdminBadArguments(t *testing.T) {
	t.Parallel()
	gateOnly(t)
	w := newWorld(t, worldOptions{})
	for _, args := range [][]string{
		{"frobnicate"},
		{"user", "add"},
		{"user", "add", "carol", "--no-such-flag"},
		{"key", "add", "alice"},
		{"grant"},
		{"grant", "alice"}, // neither --env nor --target
		{"grant", "alice", "--env", "prod", "--target", "web-1"},                                    // both
		{"target", "add", "web-3", "--env", "prod", "--upstream", "127.0.0.1:1", "--login", "root"}, // no host key option
	} {
		so, se, code := w.gate.AdminResult(args...)
		if code != 2 {
			t.Errorf("sshgate %s: exit %d, want 2 (stdout %q stderr %q)", strings.Join(args, " "), code, so, se)
			continue
		}
		if strings.TrimSpace(se) == "" {
			t.Errorf("sshgate %s: exit 2 with nothing on stderr", strings.Join(args, " "))
		}
	}
	// Nothing changed: alice still reaches web-1 and only web-1.
	r := harness.MustRun(t, w.alice.SSHTo("", nil, "ls"), nil, short)
	if !strings.Contains(r.Stdout, "web-1") || strings.Contains(r.Stdout, "web-3") {
		t.Errorf("ls after bad admin commands: %q", r.Stdout)
	}
}
