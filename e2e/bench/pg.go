package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The test PostgreSQL server of scripts/test-setup.sh, as the store tests
// find it: $SSHGATE_TEST_POSTGRES, else the DSN file the script writes.
const (
	pgDSNEnv  = "SSHGATE_TEST_POSTGRES"
	pgDSNFile = "/var/tmp/sshgate-pg/dsn"
)

func pgServerDSN() (string, error) {
	if v := strings.TrimSpace(os.Getenv(pgDSNEnv)); v != "" {
		return v, nil
	}
	b, err := os.ReadFile(pgDSNFile)
	if err != nil {
		return "", fmt.Errorf("no PostgreSQL: $%s is unset and %w (run scripts/test-setup.sh)", pgDSNEnv, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// pgStoreConfig makes a schema of its own on the test PostgreSQL server and
// returns the config (a store: section) of a gate using it; cleanup drops it.
func pgStoreConfig(ctx context.Context, dir string) (config string, cleanup func(), err error) {
	dsn, err := pgServerDSN()
	if err != nil {
		return "", nil, err
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", nil, fmt.Errorf("the test PostgreSQL DSN is not a URL")
	}
	schema := fmt.Sprintf("bench_%d", os.Getpid())
	exec := func(sql string) error {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, dsn)
		if err != nil {
			return fmt.Errorf("connect to the test PostgreSQL: %w", err)
		}
		defer c.Close(cctx)
		_, err = c.Exec(cctx, sql)
		return err
	}
	if err := exec(`CREATE SCHEMA ` + schema); err != nil {
		return "", nil, err
	}
	cleanup = func() {
		if err := exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			logf("drop bench schema %s: %v", schema, err)
		}
	}
	pwFile := ""
	if pw, ok := u.User.Password(); ok {
		u.User = url.User(u.User.Username())
		pwFile = filepath.Join(dir, "pg-password")
		if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
			cleanup()
			return "", nil, err
		}
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	config = fmt.Sprintf("store:\n  driver: postgres\n  dsn: '%s'\n", u.String())
	if pwFile != "" {
		config += fmt.Sprintf("  password_file: '%s'\n", pwFile)
	}
	return config, cleanup, nil
}
