package cli

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/auth/totp"
)

func TestUserTOTP(t *testing.T) {
	data := t.TempDir()
	expect := func(wantCode int, wantOut, stdin string, args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, data, stdin, args...)
		if code != wantCode || !strings.Contains(out+errOut, wantOut) {
			t.Fatalf("%v: exit %d, stdout %q stderr %q; want %d and %q", args, code, out, errOut, wantCode, wantOut)
		}
		return out
	}
	expect(0, "added user alice", "", "user", "add", "alice")
	expect(1, `user "bob" not found`, "", "user", "totp", "enroll", "bob")
	expect(2, "--code", "", "user", "totp", "enroll", "alice", "--code", "12a456")
	expect(1, "no pending enrolment", "", "user", "totp", "enroll", "alice", "--code", "123456")
	secretRE := regexp.MustCompile(`(?m)^secret: ([A-Z2-7]+)$`)

	// Interactive: the code on stdin.
	out := expect(0, "otpauth://totp/sshgate:alice?", "", "user", "totp", "enroll", "alice")
	m := secretRE.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "secret="+m[1]) || !strings.Contains(out, "▀") {
		t.Fatalf("enroll output: %q", out)
	}
	expect(0, "alice  pending", "", "user", "totp", "status")
	expect(1, "wrong verification code", "000000\n", "user", "totp", "enroll", "alice", "--code", "000000")
	code, _ := totp.Code(m[1], time.Now())
	expect(0, "enrolled alice", "", "user", "totp", "enroll", "alice", "--code", code)
	expect(0, "alice  enrolled", "", "user", "totp", "status", "alice")
	expect(1, "no pending enrolment", "", "user", "totp", "enroll", "alice", "--code", code)

	// Re-enrolling keeps the active secret until the new one is confirmed.
	out = expect(0, "secret:", "", "user", "totp", "enroll", "alice")
	m2 := secretRE.FindStringSubmatch(out)
	expect(0, "alice  enrolled,pending", "", "user", "totp", "status")
	code, _ = totp.Code(m2[1], time.Now()) // a new secret: its steps start unused
	expect(0, "enrolled alice", "", "user", "totp", "enroll", "alice", "--code", code)
	expect(0, "disabled TOTP for alice", "", "user", "totp", "disable", "alice")
	expect(1, "not found", "", "user", "totp", "disable", "alice")
	expect(0, "alice  no", "", "user", "totp", "status")
}

func TestBansAndMFA(t *testing.T) {
	data := t.TempDir()
	for _, c := range []struct {
		code int
		want string
		args []string
	}{
		{0, "SOURCE", []string{"bans"}},
		{2, `"1.2.3" is not an IP address`, []string{"bans", "lift", "1.2.3"}},
		{2, "IPv6 /64", []string{"bans", "lift", "2001:db8::/48"}},
		{1, "ban of 192.0.2.1/32 not found", []string{"bans", "lift", "192.0.2.1"}},
		{0, "added env prod", []string{"env", "add", "prod"}},
		{0, "env prod: totp grace", []string{"mfa", "--env", "prod", "--totp", "grace"}},
		{0, "env   prod  grace", []string{"mfa"}},
		{2, "exactly one of --env and --target", []string{"mfa", "--totp", "always"}},
		{2, `--totp "sometimes"`, []string{"mfa", "--env", "prod", "--totp", "sometimes"}},
		{1, `target "web" not found`, []string{"mfa", "--target", "web", "--totp", "never"}},
		{0, "env prod: totp default", []string{"mfa", "--env", "prod", "--totp", "default"}},
		{0, "env   prod  default", []string{"mfa"}},
	} {
		code, out, errOut := runCLI(t, data, "", c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("%v: exit %d, stdout %q stderr %q; want %d and %q", c.args, code, out, errOut, c.code, c.want)
		}
	}
}
