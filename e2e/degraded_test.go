package e2e_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// degradedFile writes size bytes of seeded random data and returns its
// path and sha256.
func degradedFile(t *testing.T, size int64) (string, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "payload.bin")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.NewChaCha8([32]byte{14, 18}), size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

// TestDegradedUpstream: the target sshd is in a network namespace of its
// own behind a link with a rate limit and 1% loss each way, and 25 ms of
// delay each way (50 ms round trip) in front of it. Through the gate a
// login works, a command's exit code is kept, and 24 MiB go up and come
// back byte-exact.
func TestDegradedUpstream(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "scp")
	ns := harness.NewNetNS(t, harness.Shaping{RateMbit: 200, LossPct: 1})
	sshd := harness.StartSSHD(t, harness.SSHDOptions{NetNS: ns})
	line := harness.NewDelayLine(t, sshd.Addr, 25*time.Millisecond)

	g := harness.StartGate(t, harness.GateOptions{})
	sshd.Authorize(t, g.GateKey(t))
	g.Admin(t, "env", "add", "far")
	g.Admin(t, "target", "add", "far-1", "--env", "far", "--upstream", line.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := g.AddUser(t, "alice")
	g.Admin(t, "grant", "alice", "--target", "far-1", "--login", "root")

	r := harness.MustRun(t, alice.SSHTo("far-1", nil, "echo hello-far"), nil, short)
	if r.Stdout != "hello-far\n" {
		t.Errorf("command output %q, want %q", r.Stdout, "hello-far\n")
	}
	for _, code := range []int{0, 1, 7, 255} {
		r := harness.Run(alice.SSHTo("far-1", nil, fmt.Sprintf("exit %d", code)), nil, short)
		if r.Err != nil || r.Code != code {
			t.Errorf("exit %d over the degraded link: got %d (%v), stderr %q", code, r.Code, r.Err, r.Stderr)
		}
	}

	src, sum := degradedFile(t, 24<<20)
	up := filepath.Join(t.TempDir(), "up.bin") // the sshd runs on this machine: its path is ours
	harness.MustRun(t, alice.SCP(src, alice.Dest("far-1")+":"+up), nil, long)
	if got := sha256File(t, up); got != sum {
		t.Fatalf("upload over the degraded link: sha256 %s, want %s", got, sum)
	}
	down := filepath.Join(t.TempDir(), "down.bin")
	harness.MustRun(t, alice.SCP(alice.Dest("far-1")+":"+up, down), nil, long)
	if got := sha256File(t, down); got != sum {
		t.Fatalf("download over the degraded link: sha256 %s, want %s", got, sum)
	}
}

// TestDegradedWebhook: the auth webhook is far away (a delay line in front
// of it). Within the webhook's timeout (2 s) a login through it succeeds;
// when the round trip is beyond the timeout the login is refused with
// "Permission denied" and nothing else, and the gate keeps serving: a
// local user logs in meanwhile, and the webhook user again once the line
// is fast.
func TestDegradedWebhook(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	harness.RequireTools(t, "sshpass", "/usr/sbin/sshd")
	key, pub := harness.Keygen(t, t.TempDir(), "id_carol")
	hooks := newHookServer(t, "carol", "hook-Passw0rd", pub)
	line := harness.NewDelayLine(t, hooks.Listener.Addr().String(), 200*time.Millisecond)
	cfg := writeConfig(t, fmt.Sprintf(`
auth:
  webhook:
    url: http://%s/auth
    timeout: 2s
    retries: 1
    mode: fallback
`, line.Addr))
	sshd := harness.StartSSHD(t, harness.SSHDOptions{Extra: []string{"AcceptEnv WEBHOOK_*"}})
	g := harness.StartGate(t, harness.GateOptions{Args: []string{"--config", cfg}})
	sshd.Authorize(t, g.GateKey(t))
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := g.AddUser(t, "alice")
	g.Admin(t, "grant", "alice", "--target", "web-1")
	g.Admin(t, "user", "add", "carol")
	g.Admin(t, "grant", "carol", "--target", "web-1")
	carol := g.Client("carol", key)
	show := "echo team=$WEBHOOK_TEAM"

	// 400 ms round trip: within the budget, by key and by password.
	for _, c := range []*harness.Client{carol, carol.WithPassword("hook-Passw0rd")} {
		r := harness.MustRun(t, c.SSHTo("web-1", nil, show), nil, short)
		if r.Stdout != "team=ops\n" {
			t.Errorf("through a slow webhook: stdout %q", r.Stdout)
		}
	}

	// 3 s round trip: beyond the 2 s budget.
	line.SetDelay(1500 * time.Millisecond)
	for _, c := range []*harness.Client{carol, carol.WithPassword("hook-Passw0rd")} {
		bad := harness.Run(c.SSHTo("web-1", nil, "echo hi"), nil, short)
		if bad.Code != 255 || !strings.Contains(bad.Stderr, "Permission denied") || bad.Stdout != "" {
			t.Errorf("webhook beyond its timeout: exit %d stdout %q stderr %q", bad.Code, bad.Stdout, bad.Stderr)
		}
		noGoError(t, "webhook beyond its timeout", bad.Stderr)
		// The gate still serves users it knows itself.
		if r := harness.MustRun(t, alice.SSHTo("web-1", nil, "echo still-here"), nil, short); r.Stdout != "still-here\n" {
			t.Errorf("local user while the webhook is slow: %q", r.Stdout)
		}
	}

	// Fast again: the webhook user gets in again.
	line.SetDelay(0)
	if r := harness.MustRun(t, carol.SSHTo("web-1", nil, show), nil, short); r.Stdout != "team=ops\n" {
		t.Errorf("after the webhook recovered: stdout %q", r.Stdout)
	}
}
