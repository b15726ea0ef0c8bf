// Package e2e_test runs the built sshgate against real OpenSSH programs: the
// ssh, scp, sftp, rsync and git clients in front, a real sshd behind.
package e2e_test

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

var dataDir string // shared test data (the 100 MiB file), removed at the end

func TestMain(m *testing.M) {
	flag.Parse()
	// The tests mostly wait on processes and sockets: run more of them at
	// once than there are cores, unless -parallel was given.
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "6")
	}
	var err error
	if dataDir, err = os.MkdirTemp("", "sshgate-e2e-data-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := harness.Main(m)
	os.RemoveAll(dataDir)
	os.Exit(code)
}

const bigSize = 100 << 20 // 100 MiB, as the transfer tests ask

var (
	bigOnce sync.Once
	bigPath string
	bigSum  string
	bigErr  error
)

// bigFile is a 100 MiB file of pseudo-random bytes, made once per run.
func bigFile(t *testing.T) (path, sum string) {
	t.Helper()
	bigOnce.Do(func() {
		bigPath = filepath.Join(dataDir, "big.bin")
		f, err := os.Create(bigPath)
		if err != nil {
			bigErr = err
			return
		}
		defer f.Close()
		h := sha256.New()
		r := rand.NewChaCha8([32]byte{1, 2, 3})
		if _, err := io.CopyN(io.MultiWriter(f, h), r, bigSize); err != nil {
			bigErr = err
			return
		}
		bigSum = hex.EncodeToString(h.Sum(nil))
	})
	if bigErr != nil {
		t.Fatalf("make big file: %v", bigErr)
	}
	return bigPath, bigSum
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("sha256: %v", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// treeDigest lists every entry under root with its type, mode and content
// hash (symlinks by target), one line each, sorted: equal digests mean equal trees.
func treeDigest(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			lines = append(lines, fmt.Sprintf("%s link %s", rel, target))
		case info.IsDir():
			lines = append(lines, fmt.Sprintf("%s dir %o", rel, info.Mode().Perm()))
		default:
			lines = append(lines, fmt.Sprintf("%s file %o %s", rel, info.Mode().Perm(), sha256File(t, p)))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// world is one gate in front of one real sshd: target web-1 (env prod,
// login root) granted to alice; target web-2 (env staging) on the same
// sshd granted to nobody.
type world struct {
	gate  *harness.Gate
	sshd  *harness.SSHD
	alice *harness.Client
}

// directMode (SSHGATE_E2E_DIRECT=1) runs the relay tests against the sshd
// alone, without the gate: a check of the tests themselves against OpenSSH.
// Tests of the gate's own behaviour skip in this mode.
var directMode = os.Getenv("SSHGATE_E2E_DIRECT") == "1"

// gateOnly skips a test of the gate's own behaviour in direct mode.
func gateOnly(t *testing.T) {
	t.Helper()
	if directMode {
		t.Skip("tests the gate itself; SSHGATE_E2E_DIRECT=1 runs without it")
	}
}

type worldOptions struct {
	forwarding bool                // grant alice web-1 with --forwarding
	gate       harness.GateOptions // how to start the gate
}

func newWorld(t *testing.T, o worldOptions) *world {
	t.Helper()
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	if directMode {
		key, pub := harness.Keygen(t, t.TempDir(), "id_direct")
		sshd.Authorize(t, pub)
		return &world{sshd: sshd, alice: harness.Direct(t, sshd, "root", key)}
	}
	g := harness.StartGate(t, o.gate)
	sshd.Authorize(t, g.GateKey(t))
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "env", "add", "staging")
	g.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	g.Admin(t, "target", "add", "web-2", "--env", "staging", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := g.AddUser(t, "alice")
	grant := []string{"grant", "alice", "--target", "web-1", "--login", "root"}
	if o.forwarding {
		grant = append(grant, "--forwarding")
	}
	g.Admin(t, grant...)
	return &world{gate: g, sshd: sshd, alice: alice}
}

const (
	short = 60 * time.Second // one command that should be quick
	long  = 5 * time.Minute  // a 100 MiB transfer through the race-built gate
)

// oneLine checks that s is exactly one non-empty line and returns it.
func oneLine(t *testing.T, what, s string) string {
	t.Helper()
	s = strings.TrimRight(s, "\r\n")
	if s == "" || strings.Contains(s, "\n") {
		t.Errorf("%s: want exactly one line, got %q", what, s)
	}
	return s
}

// noGoError checks that a user-visible message carries no Go error text.
func noGoError(t *testing.T, what, s string) {
	t.Helper()
	for _, leak := range []string{"dial tcp", "ssh: ", "connect: ", "connection refused", "handshake failed", "EOF", "i/o timeout", "%!"} {
		if strings.Contains(s, leak) {
			t.Errorf("%s leaks an internal error (%q): %q", what, leak, s)
		}
	}
}

// clientNoise drops what the ssh client prints by itself with a PTY
// ("Connection to HOST closed.") and the PTY's carriage returns.
func clientNoise(stderr string) string {
	var keep []string
	for _, l := range strings.Split(strings.ReplaceAll(stderr, "\r", ""), "\n") {
		if strings.HasPrefix(l, "Connection to ") && strings.HasSuffix(l, " closed.") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}
