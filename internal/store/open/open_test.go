package open

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store/postgres"
	"github.com/sshgate/sshgate/internal/store/postgres/pgtest"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

func TestSQLiteDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sshgate.db")
	var buf bytes.Buffer
	st, err := Store(context.Background(), config.Store{}, path, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(*sqlite.Store); !ok {
		t.Fatalf("driver \"\" opened %T", st)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Fatalf("creating a database logged at Info: %q", buf.String())
	}
}

// The password comes from its file, not the DSN, and never reaches the log.
func TestPostgresPasswordFile(t *testing.T) {
	dsn := pgtest.Schema(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Skipf("test DSN is not a URL: %v", err)
	}
	pw, ok := u.User.Password()
	if !ok {
		t.Skip("test DSN has no password")
	}
	u.User = url.User(u.User.Username())
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := config.Store{Driver: config.DriverPostgres, DSN: u.String(), PasswordFile: pwFile, SSLMode: "disable"}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := Store(context.Background(), c, "", log)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(*postgres.Store); !ok {
		t.Fatalf("driver postgres opened %T", st)
	}
	if err := st.AddUser(context.Background(), gate.User{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "store schema created") || strings.Contains(buf.String(), pw) {
		t.Fatalf("log: %q", buf.String())
	}

	if err := os.WriteFile(pwFile, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := Store(context.Background(), c, "", nil); err == nil {
		st.Close()
		t.Fatal("wrong password accepted")
	} else if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error shows a password: %v", err)
	}
}

func TestPasswordFileProblems(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\nsecond"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(dir, "missing"), empty} {
		c := config.Store{Driver: config.DriverPostgres, DSN: "postgres://u@127.0.0.1:1/x", PasswordFile: f}
		_, err := Store(context.Background(), c, "", nil)
		if err == nil || !strings.Contains(err.Error(), "store.password_file") || !strings.Contains(err.Error(), f) {
			t.Errorf("password file %s: %v", f, err)
		}
	}
	if got, err := readPassword(writeFile(t, dir, "crlf", "s3cret\r\n")); err != nil || got != "s3cret" {
		t.Errorf("readPassword(crlf) = %q, %v", got, err)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// An existing store of an older schema is migrated with one Info line.
func TestMigrationLogged(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sshgate.db")
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	// Make it a database of the schema before the last migration.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`ALTER TABLE grants DROP COLUMN forward_to`, fmt.Sprintf(`UPDATE schema_version SET version = %d`, sqlite.SchemaVersion-1)} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	var buf bytes.Buffer
	st2, err := Store(ctx, config.Store{}, path, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	want := fmt.Sprintf(`level=INFO msg="store schema migrated" driver=sqlite from=%d to=%d`, sqlite.SchemaVersion-1, sqlite.SchemaVersion)
	if lines := strings.Split(strings.TrimSpace(buf.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Fatalf("log %q, want one line with %q", buf.String(), want)
	}
	if _, err := st2.ListGrants(ctx, ""); err != nil {
		t.Fatalf("the migrated table: %v", err)
	}
}
