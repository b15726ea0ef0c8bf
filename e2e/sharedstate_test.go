package e2e_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/auth/totp"
	"github.com/sshgate/sshgate/internal/store/postgres/pgtest"
)

// Two gates on one PostgreSQL share the TOTP state: a grace window earned
// through gate A lets the same key and address in through gate B, a code
// used through A is refused through B, wrong codes through both add up to
// one lockout, and a restarted gate still holds it.
func TestTwoGatesShareTOTPState(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	dsn, pwFile := pgtest.Config(t, pgtest.Schema(t))
	cfg := filepath.Join(t.TempDir(), "sshgate.yaml")
	yaml := "store:\n  driver: postgres\n  dsn: '" + dsn + "'\n  password_file: '" + pwFile + "'\n" +
		"mfa:\n  totp:\n    grace: 10m\n    max_failures: 3\n    failure_window: 10m\n    lockout: 15m\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// The same totp_key in both data directories, as the README asks.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, totp.KeyFile), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"SSHGATE_CONFIG=" + cfg}
	a := harness.StartGate(t, harness.GateOptions{Env: env, DataDir: dirs[0]})
	b := harness.StartGate(t, harness.GateOptions{Env: env, DataDir: dirs[1]})
	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	sshd.Authorize(t, a.GateKey(t))
	sshd.Authorize(t, b.GateKey(t))
	a.Admin(t, "env", "add", "prod")
	a.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	aliceA := a.AddUser(t, "alice")
	a.Admin(t, "grant", "alice", "--target", "web-1", "--login", "root")
	aliceB := b.Client("alice", aliceA.Key)
	secret := enrolTOTP(t, a, "alice")

	// A code through A ...
	var used string
	asked, ok, out := codeLogin(t, aliceA, "web-1", func() string { used, _ = totp.Code(secret, time.Now()); return used })
	if !asked || !ok {
		t.Fatalf("right code through A: asked %v ok %v: %q", asked, ok, out)
	}
	// ... opens a grace window B honours (same user, key, address) ...
	if r := batchLogin(aliceB, "web-1"); r.Code != 0 || r.Stdout != "logged-in\n" {
		t.Fatalf("grace earned through A, used through B: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// ... and is used up for B too (from another address: no grace there).
	bFrom2 := aliceB.WithOpts("BindAddress=127.0.0.2")
	if asked, ok, out := codeLogin(t, bFrom2, "web-1", func() string { return used }); !asked || ok {
		t.Fatalf("code used through A, replayed through B: asked %v ok %v: %q", asked, ok, out)
	}
	// That replay was wrong code 1 of 3; one more through A, one through B.
	aFrom2 := aliceA.WithOpts("BindAddress=127.0.0.2")
	for i, c := range []*harness.Client{aFrom2, bFrom2} {
		if asked, ok, out := codeLogin(t, c, "web-1", func() string { return "999999" }); !asked || ok {
			t.Fatalf("wrong code %d: asked %v ok %v: %q", i+2, asked, ok, out)
		}
	}
	right := func() string { c, _ := totp.Code(secret, time.Now()); return c }
	for name, c := range map[string]*harness.Client{"A": aFrom2, "B": bFrom2} {
		asked, ok, out := codeLogin(t, c, "web-1", right)
		if asked || ok || !strings.Contains(out, "too many wrong verification codes") {
			t.Fatalf("through %s after 3 wrong codes over both gates: asked %v ok %v: %q", name, asked, ok, out)
		}
	}
	// A restarted gate still holds the lock.
	if err := b.Stop(); err != nil {
		t.Fatalf("gate B: %v", err)
	}
	b2 := harness.StartGate(t, harness.GateOptions{Env: env, DataDir: dirs[1]})
	asked, ok, out = codeLogin(t, b2.Client("alice", aliceA.Key).WithOpts("BindAddress=127.0.0.2"), "web-1", right)
	if asked || ok || !strings.Contains(out, "too many wrong verification codes") {
		t.Fatalf("restarted gate B: asked %v ok %v: %q", asked, ok, out)
	}
}
