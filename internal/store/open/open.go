// Package open opens the store the configuration names (the embedded SQLite
// file of the data directory, or PostgreSQL), the one way `sshgate serve` and
// the admin commands reach it. It reads the PostgreSQL password from its file
// and logs a schema migration in one line; it never logs the DSN or password.
//
// Must not import: store/storetest broker sshd/... relay target/... auth/... policy app
package open

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/store/postgres"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

// migrator is what both stores report about their Open.
type migrator interface{ Migrated() (from, to int) }

// Store opens the configured store; sqlitePath is the SQLite file used when
// the driver is sqlite. log (nil: no log) gets one line when the schema was
// migrated: Info for an existing database, Debug for a new one.
func Store(ctx context.Context, c config.Store, sqlitePath string, log *slog.Logger) (store.Store, error) {
	var st store.Store
	switch c.Driver {
	case "", config.DriverSQLite:
		s, err := sqlite.Open(sqlitePath)
		if err != nil {
			return nil, err
		}
		st = s
	case config.DriverPostgres:
		o := postgres.Options{DSN: c.DSN, SSLMode: c.SSLMode, CAFile: c.CAFile, MaxConns: int32(c.MaxConns)}
		if c.PasswordFile != "" {
			pw, err := readPassword(c.PasswordFile)
			if err != nil {
				return nil, err
			}
			o.Password = pw
		}
		s, err := postgres.Open(ctx, o)
		if err != nil {
			return nil, err
		}
		st = s
	default:
		return nil, fmt.Errorf("open store: unknown driver %q (want sqlite or postgres)", c.Driver)
	}
	if m, ok := st.(migrator); ok && log != nil {
		driver := c.Driver
		if driver == "" {
			driver = config.DriverSQLite
		}
		switch from, to := m.Migrated(); {
		case from == 0 && to > 0:
			log.Debug("store schema created", "driver", driver, "version", to)
		case from < to:
			log.Info("store schema migrated", "driver", driver, "from", from, "to", to)
		}
	}
	return st, nil
}

// readPassword reads a password file: its first line, without the newline.
func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("store.password_file: %w", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", errors.New("store.password_file " + path + ": empty first line")
	}
	return pw, nil
}
