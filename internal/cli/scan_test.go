package cli

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

const sshdPath = "/usr/sbin/sshd"

// startSSHD runs a real OpenSSH sshd on 127.0.0.1 with its own config and
// the given host keys, and returns its address once it listens.
func startSSHD(t *testing.T, hostKeys ...crypto.Signer) string {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skipf("skipping: OpenSSH sshd not available at %s (install openssh-server): %v", sshdPath, err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Skipf("skipping: cannot create /run/sshd for sshd privilege separation: %v", err)
	}
	dir := t.TempDir()
	var args []string
	for i, k := range hostKeys {
		p := filepath.Join(dir, fmt.Sprintf("host_key_%d", i))
		if err := sshkeys.WritePrivate(p, k, ""); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-h", p)
	}
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(strings.Join([]string{
		"ListenAddress 127.0.0.1",
		"PidFile none",
		"UsePAM no",
		"StrictModes no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"AuthorizedKeysFile none",
		"LogLevel INFO",
	}, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A free port: sshd cannot be told to pick one and report it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, sshdPath, append([]string{"-D", "-e", "-f", conf, "-p", fmt.Sprint(port)}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Skipf("skipping: cannot start sshd: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	// Wait for "Server listening on 127.0.0.1 port N." on its log.
	ready := make(chan error, 1)
	var logLines []string
	go func() {
		signal := ready
		sc := bufio.NewScanner(stderr)
		for sc.Scan() { // read to the end so sshd never blocks on its log
			line := sc.Text()
			if signal != nil {
				logLines = append(logLines, line)
				if strings.Contains(line, "Server listening on") {
					signal <- nil
					signal = nil
				}
			}
		}
		if signal != nil {
			signal <- fmt.Errorf("sshd exited: %s", strings.Join(logLines, "\n"))
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sshd did not start listening within 20s")
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

func TestScanHostKeyRealSSHD(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// ECDSA first in sshd's list: the scan must still ask for, and get, ed25519.
	addr := startSSHD(t, ecKey, edKey)
	edPub, err := ssh.NewPublicKey(edKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	fp := ssh.FingerprintSHA256(edPub)

	data := t.TempDir()
	runSteps(t, data, []step{
		{args: []string{"env", "add", "prod"}, out: "added env prod\n"},
		{args: []string{"target", "add", "web-1", "--env", "prod", "--upstream", addr, "--login", "root", "--scan-host-key"},
			out: "scanned host key for web-1: ssh-ed25519 " + fp + "\nadded target web-1 (upstream) in env prod\n"},
		{args: []string{"target", "show", "web-1"}, outHas: []string{"host key  ssh-ed25519 " + fp + "\n", "upstream  " + addr + "\n"}},
	})
	st, err := sqlite.Open(filepath.Join(data, "sshgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tg, err := st.GetTarget(context.Background(), "web-1")
	if err != nil {
		t.Fatal(err)
	}
	if tg.Upstream.HostKey != sshkeys.AuthorizedLine(edPub) {
		t.Fatalf("stored host key %q, want %q", tg.Upstream.HostKey, sshkeys.AuthorizedLine(edPub))
	}

	// The host is rebuilt with a new key: pin-host-key --scan-host-key
	// replaces the pinned key and keeps the grants.
	_, newKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	newAddr := startSSHD(t, newKey)
	newPub, err := ssh.NewPublicKey(newKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	tg.Upstream.Addr = newAddr
	if err := st.UpdateTarget(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	runSteps(t, data, []step{
		{args: []string{"user", "add", "alice"}, out: "added user alice\n"},
		{args: []string{"grant", "alice", "--target", "web-1"}, out: "added grant 1: alice -> target web-1\n"},
		{args: []string{"target", "pin-host-key", "web-1", "--scan-host-key"}, out: "" +
			"scanned host key for web-1: ssh-ed25519 " + ssh.FingerprintSHA256(newPub) + "\n" +
			"pinned host key for web-1: ssh-ed25519 " + ssh.FingerprintSHA256(newPub) + " (was ssh-ed25519 " + fp + ")\n"},
		{args: []string{"grant", "list", "alice"}, outHas: []string{"target:web-1"}},
	})

	// An sshd with only an ECDSA key: that one is pinned.
	ecAddr := startSSHD(t, ecKey)
	ecPub, err := ssh.NewPublicKey(ecKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	runSteps(t, data, []step{
		{args: []string{"target", "add", "web-2", "--env", "prod", "--upstream", ecAddr, "--login", "root", "--scan-host-key"},
			outHas: []string{"scanned host key for web-2: ecdsa-sha2-nistp256 " + ssh.FingerprintSHA256(ecPub) + "\n"}},
	})
}

func TestScanHostKeyFailures(t *testing.T) {
	// A closed port: exit 1, the address named, nothing stored.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	// Not an SSH server: it says something else and hangs up.
	notSSH, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { notSSH.Close() })
	go func() {
		for {
			c, err := notSSH.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	data := t.TempDir()
	runSteps(t, data, []step{
		{args: []string{"env", "add", "prod"}, out: "added env prod\n"},
		{args: []string{"target", "add", "web-1", "--env", "prod", "--upstream", closed, "--login", "root", "--scan-host-key"},
			code: 1, errHas: []string{"sshgate: scan host key of " + closed + ":", "connection refused"}},
		{args: []string{"target", "add", "web-1", "--env", "prod", "--upstream", notSSH.Addr().String(), "--login", "root", "--scan-host-key"},
			code: 1, errHas: []string{"sshgate: scan host key of " + notSSH.Addr().String() + ":"}},
		// The env is checked before any scan.
		{args: []string{"target", "add", "web-1", "--env", "qa", "--upstream", closed, "--login", "root", "--scan-host-key"},
			code: 1, errHas: []string{`env "qa" not found`}},
		{args: []string{"target", "list"}, out: "ID  NAME  ENV  KIND  LOGIN  ADDRESS  ALIASES\n"},
	})
}
