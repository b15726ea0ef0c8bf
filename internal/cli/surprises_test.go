package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// A file named on the command line that does not exist is a failure (exit
// 1, one line), not a usage error: no "Run ... --help" line.
func TestMissingFilesAreNotUsageErrors(t *testing.T) {
	data := t.TempDir()
	runSteps(t, data, []step{
		{args: []string{"user", "add", "alice"}, out: "added user alice\n"},
		{args: []string{"env", "add", "prod"}, out: "added env prod\n"},
		{args: []string{"key", "add", "alice", "/nonexistent.pub"}, code: 1, errHas: []string{`key file "/nonexistent.pub": no such file or directory`}},
		{args: []string{"target", "add", "w", "--env", "prod", "--upstream", "h:22", "--login", "root", "--host-key", "/nonexistent.pub"}, code: 1,
			errHas: []string{`--host-key "/nonexistent.pub": no such file or directory`}},
		{args: []string{"ca", "trust-user-ca", "/nonexistent.pub"}, code: 1, errHas: []string{"ca trust-user-ca: /nonexistent.pub: no such file or directory"}},
		// Bad content stays a usage error.
		{args: []string{"key", "add", "alice", writeFile(t, t.TempDir(), "bad.pub", "not a key\n")}, code: 2},
	})
}

// sessions kill: a malformed id exits 2; replay takes a session id.
func TestSessionIDs(t *testing.T) {
	data := t.TempDir()
	runSteps(t, data, []step{
		{args: []string{"sessions", "kill", "zz"}, code: 2, errHas: []string{`sessions kill: "zz" is not a session id`}},
		{args: []string{"sessions", "kill", "0123456789ABCDEF"}, code: 2},
		{args: []string{"replay", "0123456789abcdef"}, code: 1, errHas: []string{"replay: no recording of session 0123456789abcdef in " + filepath.Join(data, "recordings")}},
	})
	if err := os.MkdirAll(filepath.Join(data, "recordings"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(data, "recordings"), "0123456789abcdef.cast", `{"version": 2, "width": 80, "height": 24}`+"\n"+`[0.01, "o", "hello"]`+"\n")
	runSteps(t, data, []step{{args: []string{"replay", "0123456789abcdef"}, out: "hello"}})
	other := t.TempDir()
	writeFile(t, other, "fedcba9876543210.cast", `{"version": 2, "width": 80, "height": 24}`+"\n"+`[0.01, "o", "elsewhere"]`+"\n")
	conf := writeFile(t, t.TempDir(), "c.yaml", "recordings:\n  dir: "+other+"\n")
	runSteps(t, data, []step{{args: []string{"replay", "fedcba9876543210", "--config", conf}, out: "elsewhere"}})
}

// Passwords shorter than --min-password-length (default 8) are refused,
// saying the rule.
func TestMinimumPasswordLength(t *testing.T) {
	runSteps(t, t.TempDir(), []step{
		{args: []string{"user", "add", "dan", "--password-stdin"}, stdin: "ab\n", code: 2,
			errHas: []string{"password on stdin has 2 characters; at least 8 are required (--min-password-length)"}},
		{args: []string{"user", "add", "dan", "--password-stdin"}, stdin: "ünïcødé\n", code: 2, errHas: []string{"has 7 characters"}},
		{args: []string{"user", "add", "dan", "--password-stdin", "--min-password-length", "2"}, stdin: "ab\n", out: "added user dan\n"},
		{args: []string{"user", "passwd", "dan", "--password-stdin"}, stdin: "short\n", code: 2, errHas: []string{"has 5 characters; at least 8"}},
		{args: []string{"user", "passwd", "dan", "--password-stdin"}, stdin: "long enough\n", out: "set the password of dan\n"},
	})
}
