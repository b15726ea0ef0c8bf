package config

import (
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Store drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Store says where the gate keeps users, keys, targets, grants, TOTP state,
// bans and live sessions: the embedded SQLite file DATA/sshgate.db (the
// default), or a PostgreSQL database that several gates share.
type Store struct {
	Driver string `yaml:"driver"` // sqlite (default) or postgres
	// postgres only:
	DSN          string `yaml:"dsn"`           // postgres://user@host:port/db or "host=... dbname=..."; no password in it
	PasswordFile string `yaml:"password_file"` // file holding the password (trailing newline ignored)
	SSLMode      string `yaml:"sslmode"`       // disable, allow, prefer, require, verify-ca, verify-full; empty: as the DSN says
	CAFile       string `yaml:"ca_file"`       // the CA that signs the server's certificate (sslrootcert)
	MaxConns     int    `yaml:"max_conns"`     // connections per gate; 0: pgx's default (4, or the CPU count if larger)

	// The gates sharing the store (both drivers): each writes a heartbeat
	// every Heartbeat; one whose heartbeat is older than HeartbeatExpiry
	// counts as dead, and its containers may be adopted or reaped.
	Heartbeat       Duration `yaml:"heartbeat"`        // default 10s
	HeartbeatExpiry Duration `yaml:"heartbeat_expiry"` // default 30s; at least twice the heartbeat
}

// Defaults of the gates' heartbeat.
const (
	DefaultHeartbeat       = 10 * time.Second
	DefaultHeartbeatExpiry = 30 * time.Second
)

var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// dsnPassword finds a password=... keyword in a keyword/value DSN.
var dsnPassword = regexp.MustCompile(`(^|\s)password\s*=`)

func (s Store) validate(bad func(key, format string, args ...any)) {
	if h := s.Heartbeat.D(); h < 100*time.Millisecond || h > 10*time.Minute {
		bad("store.heartbeat", "%s is out of range (100ms to 10m)", h)
	}
	if e := s.HeartbeatExpiry.D(); e < 2*s.Heartbeat.D() || e > time.Hour {
		bad("store.heartbeat_expiry", "%s is out of range (twice store.heartbeat, %s, to 1h)", e, 2*s.Heartbeat.D())
	}
	switch s.Driver {
	case "", DriverSQLite:
		for _, kv := range [][2]string{{"store.dsn", s.DSN}, {"store.password_file", s.PasswordFile}, {"store.sslmode", s.SSLMode}, {"store.ca_file", s.CAFile}} {
			if kv[1] != "" {
				bad(kv[0], "only for driver postgres")
			}
		}
		if s.MaxConns != 0 {
			bad("store.max_conns", "only for driver postgres")
		}
		return
	case DriverPostgres:
	default:
		bad("store.driver", "%q is not sqlite or postgres", s.Driver)
		return
	}
	// The DSN is never repeated in a message: it may hold a password.
	switch dsn := strings.TrimSpace(s.DSN); {
	case dsn == "":
		bad("store.dsn", "required for driver postgres (e.g. postgres://sshgate@db.example:5432/sshgate)")
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://"):
		u, err := url.Parse(dsn)
		if err != nil {
			bad("store.dsn", "not a valid postgres:// URL")
			break
		}
		if _, ok := u.User.Password(); ok || u.Query().Has("password") {
			bad("store.dsn", "holds a password: put it in store.password_file")
		}
	case strings.Contains(dsn, "://"):
		bad("store.dsn", "a URL must start with postgres:// or postgresql://")
	case dsnPassword.MatchString(dsn):
		bad("store.dsn", "holds a password: put it in store.password_file")
	}
	if s.SSLMode != "" && !contains(sslModes, s.SSLMode) {
		bad("store.sslmode", "%q is not one of %s", s.SSLMode, strings.Join(sslModes, ", "))
	}
	if s.CAFile != "" && s.SSLMode != "" && s.SSLMode != "verify-ca" && s.SSLMode != "verify-full" {
		bad("store.ca_file", "is used only with store.sslmode verify-ca or verify-full (not %q)", s.SSLMode)
	}
	if strings.ContainsRune(s.PasswordFile, 0) {
		bad("store.password_file", "not a path")
	}
	if s.MaxConns < 0 || s.MaxConns > 1000 {
		bad("store.max_conns", "%d is out of range (0 to 1000)", s.MaxConns)
	}
}

// StoreDriver is the driver in effect.
func (c Config) StoreDriver() string {
	if c.Store.Driver == "" {
		return DriverSQLite
	}
	return c.Store.Driver
}
