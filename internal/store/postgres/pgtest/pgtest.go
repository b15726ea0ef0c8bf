// Package pgtest finds the PostgreSQL server the tests use and gives each
// test a schema of its own, so tests on one database run in parallel.
// scripts/test-setup.sh starts the server and writes its DSN to DSNFile;
// $SSHGATE_TEST_POSTGRES overrides it. Without a server a test fails when
// $CI is "true" and is skipped otherwise.
//
// Must not import: any project package
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar overrides DSNFile.
const EnvVar = "SSHGATE_TEST_POSTGRES"

// DSNFile is where scripts/test-setup.sh writes the test server's DSN.
const DSNFile = "/var/tmp/sshgate-pg/dsn"

// ServerDSN returns the test server's DSN.
func ServerDSN() (string, error) {
	if v := strings.TrimSpace(os.Getenv(EnvVar)); v != "" {
		return v, nil
	}
	b, err := os.ReadFile(DSNFile)
	if err != nil {
		return "", fmt.Errorf("no PostgreSQL for tests: $%s is unset and %w (run scripts/test-setup.sh)", EnvVar, err)
	}
	if v := strings.TrimSpace(string(b)); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("no PostgreSQL for tests: %s is empty", DSNFile)
}

// unavailable fails the test under CI and skips it elsewhere.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v", err)
	}
	t.Skipf("%v", err)
}

// Server returns the test server's DSN, failing or skipping the test when
// there is none or it does not answer.
func Server(t testing.TB) string {
	t.Helper()
	dsn, err := ServerDSN()
	if err != nil {
		unavailable(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		unavailable(t, fmt.Errorf("PostgreSQL for tests does not answer: %w", errors.Unwrap(err)))
	}
	c.Close(ctx)
	return dsn
}

// Schema creates an empty schema for this test, dropped when it ends, and
// returns a DSN whose search_path is that schema only.
func Schema(t testing.TB) string {
	t.Helper()
	dsn := Server(t)
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "t_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	exec := func(sql string) {
		t.Helper()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect to test PostgreSQL: %v", err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE SCHEMA ` + name)
	t.Cleanup(func() { exec(`DROP SCHEMA ` + name + ` CASCADE`) })
	return WithSearchPath(t, dsn, name)
}

// WithSearchPath returns dsn with its search_path set to schema.
func WithSearchPath(t testing.TB, dsn, schema string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("test PostgreSQL DSN is not a URL: %v", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

// Config returns what a gate's config file needs for the test schema dsn:
// the DSN without its password, and a password file (in a test temp dir)
// holding it, or "" when the DSN has none.
func Config(t testing.TB, dsn string) (dsnNoPassword, passwordFile string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || !strings.HasPrefix(dsn, "postgres") {
		t.Fatalf("test PostgreSQL DSN must be a postgres:// URL")
	}
	pw, ok := u.User.Password()
	if !ok {
		return dsn, ""
	}
	u.User = url.User(u.User.Username())
	passwordFile = filepath.Join(t.TempDir(), "pg-password")
	if err := os.WriteFile(passwordFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return u.String(), passwordFile
}
