package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	bin, dir, hs, cs := legSetup(b)
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
	cfg := legClientConfig(hs, cs)
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

// BenchmarkLegWarm is a warm connection as the gate makes it: the agent
// runs --dial-each on a socket this test listens on; each iteration takes
// the spare connection, logs in (the gate's client settings), runs
// `echo hi` and reads its first byte. It reports the handshake's, the
// session open's and the command's share (ms) and both sides' CPU per
// connection.
func BenchmarkLegWarm(b *testing.B) {
	bin, dir, hs, cs := legSetup(b)
	sock := filepath.Join(dir, "warm.sock")
	l, err := net.Listen("unix", sock)
	must(b, err)
	defer l.Close()
	cmd := exec.Command(bin, "--dial-each", "unix:"+sock, "--host-key", filepath.Join(dir, "host"), "--authorized-keys", filepath.Join(dir, "auth"), "--shell", "/bin/sh")
	must(b, cmd.Start())
	cfg := legClientConfig(hs, cs)
	if k := os.Getenv("LEG_KEX"); k != "" {
		cfg.KeyExchanges = []string{k}
	}
	var hsT, openT, execT time.Duration
	cpu0 := procCPU(cmd.Process.Pid)
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		nc, err := l.Accept()
		must(b, err)
		time.Sleep(5 * time.Millisecond) // the agent is idle, as a warm one is
		b.StartTimer()
		t0 := time.Now()
		conn, chans, reqs, err := ssh.NewClientConn(coalesce.New(nc), "leg", cfg)
		must(b, err)
		t1 := time.Now()
		c := ssh.NewClient(conn, chans, reqs)
		s, err := c.NewSession()
		must(b, err)
		t2 := time.Now()
		out, _ := s.StdoutPipe()
		must(b, s.Start("echo hi"))
		var one [1]byte
		if _, err := out.Read(one[:]); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		hsT, openT, execT = hsT+t1.Sub(t0), openT+t2.Sub(t1), execT+t3.Sub(t2)
		_ = s.Wait()
		c.Close()
	}
	b.StopTimer()
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	agentCPU := procCPU(cmd.Process.Pid) - cpu0
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	n := float64(b.N)
	b.ReportMetric(hsT.Seconds()*1e3/n, "handshake-ms")
	b.ReportMetric(openT.Seconds()*1e3/n, "open-ms")
	b.ReportMetric(execT.Seconds()*1e3/n, "exec-ms")
	b.ReportMetric(agentCPU*1e3/n, "agent-cpu-ms")
	b.ReportMetric((cpuSec(&ru1)-cpuSec(&ru0))*1e3/n, "gate-cpu-ms")
}

// procCPU is the user + system CPU seconds of pid and its waited-for
// children, from /proc.
func procCPU(pid int) float64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var t float64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseFloat(f[i], 64)
		t += v
	}
	return t / 100 // USER_HZ
}

func legClientConfig(hs, cs ssh.Signer) *ssh.ClientConfig {
	return &ssh.ClientConfig{User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(cs)},
		HostKeyCallback: sshkeys.PinnedHostKey(hs.PublicKey()), HostKeyAlgorithms: sshkeys.HostKeyAlgorithms(hs.PublicKey()),
		Config: ssh.Config{Ciphers: sshkeys.ClientCiphers}}
}

// legSetup builds the agent and writes its host key and authorized keys.
func legSetup(b *testing.B) (bin, dir string, host, client ssh.Signer) {
	dir = b.TempDir()
	bin = filepath.Join(dir, "sshgate-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	_, hpriv, _ := ed25519.GenerateKey(rand.Reader)
	_, cpriv, _ := ed25519.GenerateKey(rand.Reader)
	host, _ = ssh.NewSignerFromKey(hpriv)
	client, _ = ssh.NewSignerFromKey(cpriv)
	blk, _ := ssh.MarshalPrivateKey(hpriv, "")
	must(b, os.WriteFile(filepath.Join(dir, "host"), pem.EncodeToMemory(blk), 0o600))
	must(b, os.WriteFile(filepath.Join(dir, "auth"), ssh.MarshalAuthorizedKey(client.PublicKey()), 0o600))
	return bin, dir, host, client
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
