package e2e_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
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
