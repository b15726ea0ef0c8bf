// Package harness runs the built sshgate binaries against real OpenSSH
// programs (ssh, scp, sftp, rsync, git, sshd): the one fixture package of the
// end-to-end tests and of the benchmark (e2e/bench).
//
// For tests (a testing.TB) everything it starts listens on 127.0.0.1 on a
// free port, lives in t.TempDir and is stopped in t.Cleanup. Under those sit
// the parts the benchmark uses by themselves, returning errors instead of
// failing a test: Build, StartProcess (a process group, stopped with its
// descendants), SSHDConfig, WaitBanner, PickPort, KeygenFile,
// WriteKnownHosts, Client, DockerReady, DockerPS and the /proc readers. Waits are bounded polls, never
// sleeps. The binaries are built once per `go test` process: call Main from
// the test package's TestMain so that the build directory is removed at the
// end.
//
// Must not import: any project package
package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	binDirOnce sync.Once
	binDir     string
	binDirErr  error

	gateOnce  sync.Once
	gateBin   string
	gateErr   error
	agentOnce sync.Once
	agentBin  string
	agentErr  error
)

// Main runs the tests and removes the binaries built for them. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	return code
}

// RepoRoot is the directory holding the module's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

func ensureBinDir() (string, error) {
	binDirOnce.Do(func() {
		binDir, binDirErr = os.MkdirTemp("", "sshgate-e2e-bin-")
	})
	return binDir, binDirErr
}

// Build runs `go build -o out pkg` in the module root: with -race (and cgo)
// when race, else static (CGO_ENABLED=0), as released.
func Build(ctx context.Context, out, pkg string, race bool) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", out}
	env := os.Environ()
	if race {
		args = append(args, "-race")
		env = append(env, "CGO_ENABLED=1")
	} else {
		env = append(env, "CGO_ENABLED=0")
	}
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, GoTool(), args...)
	cmd.Dir = root
	cmd.Env = env
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, buf.String())
	}
	if d := time.Since(start); d > 20*time.Second {
		fmt.Fprintf(os.Stderr, "harness: built %s in %s\n", pkg, d.Round(time.Second))
	}
	return nil
}

// GoTool is the go command: $GOROOT/bin/go when GOROOT is set, else go from
// PATH, else /usr/local/go/bin/go.
func GoTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
		return "go"
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "/usr/local/go/bin/go"
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// GateBinary builds ./cmd/sshgate with -race (the tests run with -race) once
// per process and returns its path. The test fails if it does not build.
func GateBinary(t testing.TB) string {
	t.Helper()
	gateOnce.Do(func() {
		dir, err := ensureBinDir()
		if err != nil {
			gateErr = err
			return
		}
		p := filepath.Join(dir, "sshgate")
		if gateErr = Build(context.Background(), p, "./cmd/sshgate", true); gateErr == nil {
			gateBin = p
		}
	})
	if gateErr != nil {
		t.Fatalf("build sshgate: %v", gateErr)
	}
	return gateBin
}

// AgentBinary builds ./cmd/sshgate-agent static (CGO_ENABLED=0) once per
// process and returns its path.
func AgentBinary(t testing.TB) string {
	t.Helper()
	agentOnce.Do(func() {
		dir, err := ensureBinDir()
		if err != nil {
			agentErr = err
			return
		}
		p := filepath.Join(dir, "sshgate-agent")
		if agentErr = Build(context.Background(), p, "./cmd/sshgate-agent", false); agentErr == nil {
			agentBin = p
		}
	})
	if agentErr != nil {
		t.Fatalf("build sshgate-agent: %v", agentErr)
	}
	return agentBin
}

// BuildOnce builds both binaries (once per process) and returns their paths.
func BuildOnce(t testing.TB) (gate, agent string) {
	t.Helper()
	return GateBinary(t), AgentBinary(t)
}

// RequireTools skips the test when a program it needs is missing, or when
// not running as root, unless CI is set: there, test-setup.sh installed
// everything and a missing tool is a failure.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if strings.HasPrefix(tool, "/") {
			if _, err := os.Stat(tool); err != nil {
				missing = append(missing, tool)
			}
			continue
		}
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	var why string
	if len(missing) > 0 {
		why = fmt.Sprintf("missing %s (run scripts/test-setup.sh)", strings.Join(missing, ", "))
	} else if os.Geteuid() != 0 {
		why = "needs root (sshd with its own config, root login on the upstream)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("e2e: %s", why)
	}
	t.Skipf("e2e: %s", why)
}

// Eventually polls cond every few milliseconds until it returns true or the
// timeout passes; it returns whether cond became true.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	wait := 2 * time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
		if wait < 50*time.Millisecond {
			wait *= 2
		}
	}
}

// Buffer is a bytes.Buffer safe for one writer and concurrent readers.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// WaitFor polls until the buffer contains s or timeout passes.
func (b *Buffer) WaitFor(s string, timeout time.Duration) bool {
	return Eventually(timeout, func() bool { return strings.Contains(b.String(), s) })
}
