package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/coalesce"
	"github.com/sshgate/sshgate/internal/sshkeys"
)

// BenchmarkLegUpload is the gate-agent leg of a container session as a
// process: the agent binary dials a unix socket this test listens on (as
// --dial-each does to warm.sock), this test logs in with the gate's client
// settings for containers (and the coalescing conn the broker puts under
// it), and writes b.N MiB into `cat > /dev/null`. It reports the agent's
// CPU (with its cat) and this process's per GiB: the container's and the
// gate's share of that leg.
func BenchmarkLegUpload(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "sshgate-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	_, hpriv, _ := ed25519.GenerateKey(rand.Reader)
	_, cpriv, _ := ed25519.GenerateKey(rand.Reader)
	hs, _ := ssh.NewSignerFromKey(hpriv)
	cs, _ := ssh.NewSignerFromKey(cpriv)
	blk, _ := ssh.MarshalPrivateKey(hpriv, "")
	must(b, os.WriteFile(filepath.Join(dir, "host"), pem.EncodeToMemory(blk), 0o600))
	must(b, os.WriteFile(filepath.Join(dir, "auth"), ssh.MarshalAuthorizedKey(cs.PublicKey()), 0o600))
	sock := filepath.Join(dir, "leg.sock")
	l, err := net.Listen("unix", sock)
	must(b, err)
	defer l.Close()
	args := []string{bin, "--dial", "unix:" + sock, "--host-key", filepath.Join(dir, "host"), "--authorized-keys", filepath.Join(dir, "auth"), "--shell", "/bin/sh"}
	if w := os.Getenv("LEG_WRAP"); w != "" { // e.g. "perf record -o /tmp/x.data --"
		args = append(strings.Fields(w), args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	must(b, cmd.Start())
	nc, err := l.Accept()
	must(b, err)
	cfg := &ssh.ClientConfig{User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(cs)},
		HostKeyCallback: sshkeys.PinnedHostKey(hs.PublicKey()), HostKeyAlgorithms: sshkeys.HostKeyAlgorithms(hs.PublicKey()),
		Config: ssh.Config{Ciphers: sshkeys.ClientCiphers}}
	if c := os.Getenv("LEG_CIPHER"); c != "" {
		cfg.Ciphers = []string{c}
	}
	conn, chans, reqs, err := ssh.NewClientConn(coalesce.New(nc), "leg", cfg)
	must(b, err)
	c := ssh.NewClient(conn, chans, reqs)
	s, err := c.NewSession()
	must(b, err)
	in, _ := s.StdinPipe()
	must(b, s.Start("cat > /dev/null"))
	buf := make([]byte, 1<<20)
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.SetBytes(1 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := in.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	in.Close()
	must(b, s.Wait())
	b.StopTimer()
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	c.Close()
	_ = cmd.Wait()
	gib := float64(b.N) / 1024
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	b.ReportMetric(cpuSec(ru)/gib, "agent-s/GiB")
	b.ReportMetric((cpuSec(&ru1)-cpuSec(&ru0))/gib, "gate-s/GiB")
}

func cpuSec(ru *syscall.Rusage) float64 {
	return (time.Duration(ru.Utime.Nano()) + time.Duration(ru.Stime.Nano())).Seconds()
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
