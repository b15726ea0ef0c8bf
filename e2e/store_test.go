package e2e_test

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/store/postgres/pgtest"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

// Two gates with their own data directories share one PostgreSQL store:
// what the admin CLI adds through one is what the other serves.
func TestTwoGatesOnePostgres(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	dsn, pwFile := pgtest.Config(t, pgtest.Schema(t))
	cfg := filepath.Join(t.TempDir(), "sshgate.yaml")
	yaml := "store:\n  driver: postgres\n  dsn: '" + dsn + "'\n  password_file: '" + pwFile + "'\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"SSHGATE_CONFIG=" + cfg}
	a := harness.StartGate(t, harness.GateOptions{Env: env})
	b := harness.StartGate(t, harness.GateOptions{Env: env})
	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	sshd.Authorize(t, a.GateKey(t))
	sshd.Authorize(t, b.GateKey(t))

	a.Admin(t, "env", "add", "prod")
	a.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := a.AddUser(t, "alice")
	a.Admin(t, "grant", "alice", "--target", "web-1", "--login", "root")
	if out := b.Admin(t, "user", "list"); !strings.Contains(out, "alice") {
		t.Fatalf("gate B's CLI does not list alice: %q", out)
	}
	out := a.Admin(t, "gates")
	if !strings.Contains(out, a.Addr) || !strings.Contains(out, b.Addr) || strings.Count(out, " live\n") != 2 {
		t.Fatalf("gates does not list both gates as live:\n%s", out)
	}
	for _, g := range []*harness.Gate{a, b} {
		r := harness.MustRun(t, g.Client("alice", alice.Key).SSHTo("web-1", nil, "echo", "via", g.Addr), nil, short)
		if r.Stdout != "via "+g.Addr+"\n" {
			t.Errorf("through %s: stdout %q", g.Addr, r.Stdout)
		}
		if _, err := os.Stat(filepath.Join(g.DataDir, "sshgate.db")); !os.IsNotExist(err) {
			t.Errorf("%s has an SQLite file with store driver postgres: %v", g.DataDir, err)
		}
	}
	// A gate that stops removes itself from the registry.
	if err := b.Stop(); err != nil {
		t.Fatalf("gate B: %v", err)
	}
	if out := a.Admin(t, "gates"); !strings.Contains(out, a.Addr) || strings.Contains(out, b.Addr) {
		t.Fatalf("gates after B stopped:\n%s", out)
	}
}

// An older sshgate on a store a newer one has migrated refuses to serve, in
// one line naming both schema versions.
func TestNewerStoreRefused(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	g := harness.StartGate(t, harness.GateOptions{})
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(g.DataDir, "sshgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	newer := sqlite.SchemaVersion + 1
	if _, err := db.Exec(`UPDATE schema_version SET version = ?`, newer); err != nil {
		t.Fatal(err)
	}
	db.Close()
	cmd := exec.Command(g.Bin, "serve", "--data", g.DataDir, "--listen", fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)))
	cmd.Env = append(os.Environ(), "SSHGATE_DATA="+g.DataDir)
	r := harness.Run(cmd, nil, short)
	want := fmt.Sprintf("database schema version %d is newer than this sshgate knows (%d): upgrade sshgate\n", newer, sqlite.SchemaVersion)
	if r.Code != 1 || r.Stdout != "" || !strings.HasPrefix(r.Stderr, "sshgate: open store ") || !strings.HasSuffix(r.Stderr, want) || strings.Count(r.Stderr, "\n") != 1 {
		t.Fatalf("serve on a newer store: exit %d, stdout %q, stderr %q; want exit 1 and one line ending %q", r.Code, r.Stdout, r.Stderr, want)
	}
}

// pgConfig is a fresh schema on the shared test PostgreSQL, as a gate's
// store.dsn and store.password_file.
func pgConfig(t *testing.T) (dsn, passwordFile string) {
	t.Helper()
	return pgtest.Config(t, pgtest.Schema(t))
}
