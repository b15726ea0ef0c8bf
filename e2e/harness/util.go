package harness

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := PickPort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return port
}

// PickPort asks the kernel for a free 127.0.0.1 port. It can be taken again
// before the caller listens on it: callers retry.
func PickPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitListening polls until addr accepts a TCP connection, alive says the
// process is still running, or the timeout passes.
func WaitListening(addr string, timeout time.Duration, alive func() bool) error {
	var lastErr error
	ok := Eventually(timeout, func() bool {
		if alive != nil && !alive() {
			lastErr = errors.New("process exited before listening")
			return true
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			lastErr = err
			return false
		}
		c.Close()
		lastErr = nil
		return true
	})
	if !ok {
		return fmt.Errorf("%s not listening after %s: %v", addr, timeout, lastErr)
	}
	return lastErr
}

// Keygen makes an ed25519 key pair with ssh-keygen in dir and returns the
// private key's path and the public key's authorized_keys line.
func Keygen(t testing.TB, dir, name string) (privPath, pubLine string) {
	t.Helper()
	privPath, pubLine, err := KeygenFile(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return privPath, pubLine
}

// KeygenFile is Keygen returning an error.
func KeygenFile(dir, name string) (privPath, pubLine string, err error) {
	privPath = filepath.Join(dir, name)
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", privPath).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("ssh-keygen %s: %v\n%s", name, err, out)
	}
	pub, err := os.ReadFile(privPath + ".pub")
	if err != nil {
		return "", "", fmt.Errorf("read public key: %w", err)
	}
	return privPath, strings.TrimSpace(string(pub)), nil
}

// WriteKnownHosts writes a known_hosts file trusting the public key in
// pubKeyFile for [host]:port, and returns the key as "TYPE BASE64".
func WriteKnownHosts(file, host string, port int, pubKeyFile string) (hostKey string, err error) {
	pub, err := os.ReadFile(pubKeyFile)
	if err != nil {
		return "", fmt.Errorf("host key: %w", err)
	}
	f := strings.Fields(string(pub))
	if len(f) < 2 {
		return "", fmt.Errorf("host key %s: %q is no public key", pubKeyFile, pub)
	}
	hostKey = f[0] + " " + f[1]
	line := fmt.Sprintf("[%s]:%d %s\n", host, port, hostKey)
	if err := os.WriteFile(file, []byte(line), 0o600); err != nil {
		return "", err
	}
	return hostKey, nil
}

// Result is what a finished command left.
type Result struct {
	Stdout, Stderr string
	Code           int // exit status; -1 if killed by a signal or not started
	Err            error
}

// Run runs cmd with stdin (may be nil) and bounded by timeout, and returns
// its output and exit status. A command still running at the timeout is
// killed and the result's Err says so.
func Run(cmd *exec.Cmd, stdin []byte, timeout time.Duration) Result {
	var so, se bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &so
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &se
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		return Result{Code: -1, Err: err}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		if cmd.SysProcAttr.Setpgid {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		<-done
		err = fmt.Errorf("timed out after %s: %s", timeout, strings.Join(cmd.Args, " "))
	}
	r := Result{Stdout: so.String(), Stderr: se.String(), Code: exitCode(cmd, err)}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		r.Err = err
	}
	return r
}

func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		return -1
	}
	return cmd.ProcessState.ExitCode()
}

// MustRun runs cmd and fails the test unless it exits 0.
func MustRun(t testing.TB, cmd *exec.Cmd, stdin []byte, timeout time.Duration) Result {
	t.Helper()
	r := Run(cmd, stdin, timeout)
	if r.Err != nil || r.Code != 0 {
		t.Fatalf("%s: exit %d %v\nstdout: %s\nstderr: %s", strings.Join(cmd.Args, " "), r.Code, r.Err, clip(r.Stdout), clip(r.Stderr))
	}
	return r
}

func clip(s string) string {
	if len(s) > 4000 {
		return s[:2000] + "\n...\n" + s[len(s)-2000:]
	}
	return s
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '-' || r == '_' || r == '.' || r == ',' || r == '=' || r == ':' || r == '+' || r == '@' ||
			('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// LogDir is where the logs of failed tests are kept: $SSHGATE_E2E_LOGDIR, or
// sshgate-e2e-logs in the temp dir.
func LogDir() string {
	if d := os.Getenv("SSHGATE_E2E_LOGDIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "sshgate-e2e-logs")
}

// saveLog writes a failed test's process log to LogDir and returns the path.
func saveLog(t testing.TB, what, content string) string {
	dir := LogDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ""
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "-" + what + ".log"
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		return ""
	}
	return p
}
