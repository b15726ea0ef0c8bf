package e2e_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/auth/totp"
)

// A target's TOTP mode holds however the connection reaches it: by alias,
// by NODEID-UID, by the user's default target, or from the account menu
// after a login that did not prove what the target asks.
func TestTOTPModeByAliasDefaultTargetAndMenu(t *testing.T) {
	t.Parallel()
	w := defenceWorld(t, "mfa:\n  totp:\n    grace: 10m\n")
	g := w.gate
	// web-1 is node 1 (alice's uid is 1); web-2 is node 2.
	g.Admin(t, "target", "add", "web-2", "--env", "prod", "--upstream", w.sshd.Addr, "--login", "root", "--host-key", w.sshd.HostKeyPub)
	g.Admin(t, "grant", "alice", "--target", "web-2", "--login", "root")
	g.Admin(t, "target", "alias", "add", "web-1", "www")
	secret := enrolTOTP(t, g, "alice")
	g.Admin(t, "mfa", "--target", "web-1", "--totp", "always")

	// A code for web-2 (mode grace) opens alice's grace window.
	if asked, ok, out := codeLogin(t, w.alice, "web-2", func() string { c, _ := totp.Code(secret, time.Now()); return c }); !asked || !ok {
		t.Fatalf("code for web-2: asked %v ok %v: %q", asked, ok, out)
	}
	if r := batchLogin(w.alice, "web-2"); r.Code != 0 {
		t.Fatalf("web-2 within grace: exit %d stderr %q", r.Code, r.Stderr)
	}
	// web-1 says always: grace does not open it, whatever its spelling.
	if r := batchLogin(w.alice, "web-1"); r.Code != 255 {
		t.Fatalf("web-1 within grace: exit %d stdout %q", r.Code, r.Stdout)
	}
	if r := batchLogin(w.alice, "www"); r.Code != 255 || strings.Contains(r.Stdout, "logged-in") {
		t.Errorf("alias of an always target within grace: exit %d stdout %q", r.Code, r.Stdout)
	}
	if r := harness.Run(w.alice.SSH("1-1@"+w.alice.Host, "echo", "logged-in"), nil, short); r.Code != 255 || strings.Contains(r.Stdout, "logged-in") {
		t.Errorf("NODEID-UID of an always target within grace: exit %d stdout %q", r.Code, r.Stdout)
	}
	if asked, ok, out := codeLogin(t, w.alice, "www", func() string { return "000000" }); !asked || ok {
		t.Errorf("alias of an always target, wrong code: asked %v ok %v: %q", asked, ok, out)
	}
	g.Admin(t, "user", "default-target", "alice", "web-1")
	if r := batchLogin(w.alice, ""); r.Code != 255 || strings.Contains(r.Stdout, "logged-in") {
		t.Errorf("default target always within grace: exit %d stdout %q", r.Code, r.Stdout)
	}

	// The menu (alice+gate logs in on grace): web-1 is refused with one
	// line and the menu stays; web-2 opens.
	cmd := w.alice.SSHTo("gate", []string{"-tt"})
	cmd.Env = append(cmd.Env, "TERM=dumb")
	s := startPTY(t, cmd, 24, 100)
	pick := func(name string) string {
		t.Helper()
		re := regexp.MustCompile(`(\d+)\) ` + regexp.QuoteMeta(name) + ` `)
		var m []string
		if !harness.Eventually(short, func() bool { m = re.FindStringSubmatch(s.out.String()); return m != nil }) {
			t.Fatalf("menu never listed %s: %q", name, s.out.String())
		}
		return m[1]
	}
	fmt.Fprintf(s.ptmx, "%s\r", pick("web-1"))
	refusal := `sshgate: target "web-1" requires a verification code: reconnect as alice+web-1`
	if !harness.Eventually(short, func() bool { return strings.Count(s.out.String(), "Choose a target") >= 2 }) ||
		!strings.Contains(s.out.String(), refusal) {
		t.Fatalf("menu, web-1 on grace: %q", s.out.String())
	}
	fmt.Fprintf(s.ptmx, "%s\r", pick("web-2"))
	if !harness.Eventually(short, func() bool { return strings.Contains(s.out.String(), "Connecting to web-2") }) {
		t.Fatalf("menu, web-2 on grace: %q", s.out.String())
	}
	fmt.Fprintf(s.ptmx, "exit 3\r")
	if !harness.Eventually(short, func() bool { return strings.Count(s.out.String(), "Choose a target") >= 3 }) {
		t.Fatalf("back to the menu: %q", s.out.String())
	}
	fmt.Fprintf(s.ptmx, "q\r")
	select {
	case <-s.done:
	case <-time.After(short):
		t.Fatalf("menu did not end: %q", s.out.String())
	}

	// A target that says never asks nobody, by alias either.
	g.Admin(t, "mfa", "--target", "web-1", "--totp", "never")
	from2 := w.alice.WithOpts("BindAddress=127.0.0.2")
	if r := batchLogin(from2, "www"); r.Code != 0 {
		t.Errorf("alias of a never target: exit %d stderr %q", r.Code, r.Stderr)
	}
	if r := batchLogin(from2, ""); r.Code != 0 {
		t.Errorf("default target never: exit %d stderr %q", r.Code, r.Stderr)
	}
}
