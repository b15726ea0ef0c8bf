package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// PrivatePostgres is a PostgreSQL server of one test's own, which the test
// may stop and start (the shared one on 55432 is never touched): Debian's
// binaries, run as the postgres user, a data directory under /var/tmp,
// 127.0.0.1 only, trust authentication for the postgres role.
type PrivatePostgres struct {
	Dir  string
	Port int
	DSN  string // postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable
	bin  string
}

// StartPrivatePostgres initialises and starts a private server, removed
// (stopped at once, files deleted) in t.Cleanup. It skips the test when
// PostgreSQL is not installed.
func StartPrivatePostgres(t testing.TB) *PrivatePostgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	if len(bins) == 0 {
		t.Skip("PostgreSQL is not installed (run scripts/test-setup.sh)")
	}
	sort.Strings(bins)
	dir, err := os.MkdirTemp("/var/tmp", "sshgate-pg-private-")
	if err != nil {
		t.Fatal(err)
	}
	p := &PrivatePostgres{Dir: dir, Port: FreePort(t), bin: bins[len(bins)-1]}
	p.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
	t.Cleanup(func() {
		_ = p.pgctl("stop", "-m", "immediate", "-w", "-t", "30")
		os.RemoveAll(dir)
	})
	if out, err := exec.Command("chown", "postgres:postgres", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown %s: %v: %s", dir, err, out)
	}
	if out, err := p.asPostgres("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v: %s", err, out)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *PrivatePostgres) asPostgres(prog string, args ...string) *exec.Cmd {
	return exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, prog)}, args...)...)
}

func (p *PrivatePostgres) pgctl(args ...string) error {
	out, err := p.asPostgres("pg_ctl", append([]string{"-D", filepath.Join(p.Dir, "data")}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %v: %v: %s", args, err, out)
	}
	return nil
}

// Start starts the server (again) and waits until it accepts.
func (p *PrivatePostgres) Start() error {
	cmd := p.asPostgres("pg_ctl", "-D", filepath.Join(p.Dir, "data"), "-l", filepath.Join(p.Dir, "server.log"), "-w", "-t", "60",
		"-o", "-c listen_addresses=127.0.0.1 -p "+strconv.Itoa(p.Port)+" -k "+p.Dir+" -c fsync=off -c max_connections=100", "start")
	cmd.Stdin = nil
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.Dir, "server.log"))
		return fmt.Errorf("start private postgres: %v: %s\n%s", err, out, log)
	}
	return WaitListening(net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)), 30*time.Second, nil)
}

// Stop stops the server at once (fast shutdown: clients are disconnected).
func (p *PrivatePostgres) Stop() error { return p.pgctl("stop", "-m", "fast", "-w", "-t", "60") }
