package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/internal/store/postgres/pgtest"
)

// The admin commands work the same against PostgreSQL, through --config.
func TestPostgresStore(t *testing.T) {
	dsn, pwFile := pgtest.Config(t, pgtest.Schema(t))
	dir := t.TempDir()
	data := filepath.Join(dir, "data") // the keys' directory: it must exist, as for SQLite
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sshgate.yaml")
	// The DSN is a YAML scalar: quote it.
	if err := os.WriteFile(cfg, []byte("store:\n  driver: postgres\n  dsn: '"+dsn+"'\n  password_file: '"+pwFile+"'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	line, fp := newKey(t, "laptop")
	for _, c := range []struct {
		args  []string
		stdin string
		out   string
	}{
		{[]string{"user", "add", "alice"}, "", "added user alice\n"},
		{[]string{"key", "add", "alice", "-"}, line + "\n", "added key " + fp},
		{[]string{"env", "add", "prod"}, "", ""},
		{[]string{"user", "list"}, "", "alice"},
		{[]string{"key", "list", "alice"}, "", fp},
	} {
		code, out, errOut := runCLI(t, data, c.stdin, append([]string{"--config", cfg}, c.args...)...)
		if code != 0 || !strings.Contains(out, c.out) {
			t.Fatalf("%v: code %d, stdout %q, stderr %q", c.args, code, out, errOut)
		}
	}
	// Nothing went to the data directory's SQLite file.
	if _, err := os.Stat(filepath.Join(data, "sshgate.db")); !os.IsNotExist(err) {
		t.Fatalf("sshgate.db exists with store driver postgres: %v", err)
	}
	// Through $SSHGATE_CONFIG too.
	t.Setenv(ConfigEnvVar, cfg)
	if code, out, errOut := runCLI(t, data, "", "user", "list"); code != 0 || !strings.Contains(out, "alice") {
		t.Fatalf("user list via $%s: %d %q %q", ConfigEnvVar, code, out, errOut)
	}
}

func TestBadStoreConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sshgate.yaml")
	if err := os.WriteFile(cfg, []byte("store:\n  driver: postgres\n  dsn: postgres://u:hunter2@db/x\n  sslmode: maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, t.TempDir(), "", "--config", cfg, "user", "list")
	if code != ExitUsage || out != "" || !strings.Contains(errOut, "store.dsn: holds a password") ||
		!strings.Contains(errOut, `store.sslmode: "maybe"`) || strings.Contains(errOut, "hunter2") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out, errOut)
	}
}
