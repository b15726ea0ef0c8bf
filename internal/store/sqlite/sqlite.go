// Package sqlite is the embedded store: store.Store on SQLite through
// modernc.org/sqlite (no cgo). The database runs in WAL mode so that the
// running gate reads while the admin CLI writes from another process; no
// result is cached (only compiled statements, stmts.go), so every read sees
// the latest committed write. The schema grows by ordered migrations recorded
// in schema_version. Targets keep their kind-specific spec in a JSON column,
// so new spec fields need no migration.
//
// It imports store only: no ssh, policy or target package.
//
// Must not import: store/storetest broker sshd/... relay target/... auth/... policy app
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// BusyTimeout is how long a statement waits for another process's lock.
const BusyTimeout = 5 * time.Second

// Store is store.Store on one SQLite database file.
type Store struct {
	db       *db // prepared statements kept (stmts.go)
	from, to int // schema versions before and after Open
}

var _ store.Store = (*Store)(nil)

// migrations are applied in order; migrations[i] brings the schema to
// version i+1. Never edit one that has shipped: append a new one.
var migrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE users (
	name          TEXT PRIMARY KEY NOT NULL,
	password_hash TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL
);
CREATE TABLE keys (
	user           TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
	fingerprint    TEXT NOT NULL,
	authorized_key TEXT NOT NULL,
	comment        TEXT NOT NULL DEFAULT '',
	created_at     INTEGER NOT NULL,
	PRIMARY KEY (user, fingerprint)
);
CREATE TABLE envs (
	name       TEXT PRIMARY KEY NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE targets (
	name       TEXT PRIMARY KEY NOT NULL,
	env        TEXT NOT NULL REFERENCES envs(name) ON DELETE RESTRICT,
	kind       TEXT NOT NULL,
	login      TEXT NOT NULL DEFAULT '',
	spec       TEXT NOT NULL DEFAULT '{}',
	created_at INTEGER NOT NULL
);
CREATE INDEX targets_env ON targets(env);
CREATE TABLE grants (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	user       TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
	env        TEXT REFERENCES envs(name) ON DELETE CASCADE,
	target     TEXT REFERENCES targets(name) ON DELETE CASCADE,
	login      TEXT NOT NULL DEFAULT '',
	forwarding INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	CHECK ((env IS NULL) <> (target IS NULL))
);
CREATE INDEX grants_user ON grants(user);
CREATE INDEX grants_env ON grants(env);
CREATE INDEX grants_target ON grants(target);
`,
	// TOTP enrolments, per env/target TOTP modes, bans.
	`
CREATE TABLE totp (
	user       TEXT PRIMARY KEY NOT NULL REFERENCES users(name) ON DELETE CASCADE,
	secret     TEXT NOT NULL,
	active     INTEGER NOT NULL DEFAULT 0,
	last_step  INTEGER NOT NULL DEFAULT 0,
	pending    TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL
);
CREATE TABLE totp_modes (
	env    TEXT UNIQUE REFERENCES envs(name) ON DELETE CASCADE,
	target TEXT UNIQUE REFERENCES targets(name) ON DELETE CASCADE,
	mode   TEXT NOT NULL,
	CHECK ((env IS NULL) <> (target IS NULL))
);
CREATE TABLE bans (
	source     TEXT PRIMARY KEY NOT NULL,
	until      INTEGER NOT NULL,
	reason     TEXT NOT NULL DEFAULT '',
	count      INTEGER NOT NULL DEFAULT 1,
	created_at INTEGER NOT NULL
);
`,
	// live sessions (`sshgate sessions`).
	`
CREATE TABLE live_sessions (
	id             TEXT PRIMARY KEY NOT NULL,
	gate_id        TEXT NOT NULL,
	user           TEXT NOT NULL,
	target         TEXT NOT NULL,
	login          TEXT NOT NULL DEFAULT '',
	started_at     INTEGER NOT NULL,
	bytes_in       INTEGER NOT NULL DEFAULT 0,
	bytes_out      INTEGER NOT NULL DEFAULT 0,
	updated_at     INTEGER NOT NULL,
	kill_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX live_sessions_gate ON live_sessions(gate_id, kill_requested);
`,
	// account menu and username grammar: target ids, aliases and
	// primary marker, user uids and default targets, env groups.
	menuMigration,
	// the gates sharing the store and their heartbeats.
	`
CREATE TABLE gates (
	id         TEXT PRIMARY KEY NOT NULL,
	address    TEXT NOT NULL DEFAULT '',
	version    TEXT NOT NULL DEFAULT '',
	started_at INTEGER NOT NULL,
	heartbeat  INTEGER NOT NULL,
	sessions   INTEGER NOT NULL DEFAULT 0
);
`,
	// login state shared by the gates (TOTP grace windows, per-account
	// failure counters) and the registry of warm containers.
	sharedStateMigration,
	// per-grant controls (gate.Controls as JSON).
	`ALTER TABLE grants ADD COLUMN controls TEXT NOT NULL DEFAULT '{}';`,
	// single sign-on: managed grants and reuse windows (sso.go).
	ssoMigration,
	// the key each live session logged in with (`key remove` ends them).
	`ALTER TABLE live_sessions ADD COLUMN key_fp TEXT NOT NULL DEFAULT '';`,
	// where a grant's local forwards may go (gate.Grant.ForwardTo as a
	// JSON array; '' for anywhere). A gate older than this migration refuses
	// the store rather than ignore the column and forward anywhere.
	`ALTER TABLE grants ADD COLUMN forward_to TEXT NOT NULL DEFAULT '';`,
}

// SchemaVersion is the version Open brings a database to.
var SchemaVersion = len(migrations)

// Open opens (creating if needed) the database at path and migrates it.
// Processes opening one file at once migrate it one after the other: the
// migration runs in an immediate (write-locked) transaction.
// MaxConns bounds the connections (and so the fds) one Store holds.
const MaxConns = 8

func Open(path string) (*Store, error) { return open(path, migrations) }

// Migrated reports the schema versions before and after Open: from < to
// when this Open migrated the database.
func (s *Store) Migrated() (from, to int) { return s.from, s.to }

func open(path string, migs []string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open store: empty database path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open store %s: path must not contain '?' or '#'", path)
	}
	// The database holds password hashes: create it private. SQLite gives
	// the -wal and -shm files the mode of the database file.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	f.Close()
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(BusyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "1")
	q.Set("_synchronous", "NORMAL")
	// Write transactions take the write lock up front, so two processes
	// never deadlock upgrading read locks; busy_timeout then queues them.
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// A bounded pool that keeps what it opens. database/sql's default
	// (unbounded, 2 idle) opens a connection per concurrent query in a
	// burst and closes all but 2 afterwards; in WAL mode every open
	// connection holds a lock on the database file, so SQLite defers each
	// such close and keeps its fd: 40 concurrent sessions left the gate
	// with 62 fds on sshgate.db. With as many idle as open, the gate holds
	// at most MaxConns connections, ever.
	db.SetMaxOpenConns(MaxConns)
	db.SetMaxIdleConns(MaxConns)
	s := &Store{db: newDB(db)}
	if err := s.migrate(context.Background(), migs); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context, migs []string) error {
	// The common case, an up-to-date database, needs no write lock.
	var cur sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&cur); err == nil && cur.Valid && int(cur.Int64) >= len(migs) {
		if int(cur.Int64) > len(migs) {
			return newerError(int(cur.Int64), len(migs))
		}
		s.from, s.to = len(migs), len(migs)
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var v int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migs) {
		return newerError(v, len(migs))
	}
	for i := v; i < len(migs); i++ {
		if _, err := tx.ExecContext(ctx, migs[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if v < len(migs) {
		if _, err := tx.ExecContext(ctx, `DELETE FROM schema_version`); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version(version) VALUES (?)`, len(migs)); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migration: %w", err)
	}
	s.from, s.to = v, len(migs)
	return nil
}

func newerError(have, know int) error {
	return fmt.Errorf("database schema version %d is newer than this sshgate knows (%d): upgrade sshgate", have, know)
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

func isUniqueViolation(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || c == sqlite3.SQLITE_CONSTRAINT_UNIQUE ||
		c == sqlite3.SQLITE_CONSTRAINT_TRIGGER // a name taken by an alias (menu.go)
}

func isFKViolation(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

func toDB(t time.Time) int64 {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UnixNano()
}

func fromDB(n int64) time.Time { return time.Unix(0, n).UTC() }

func (s *Store) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func exists(ctx context.Context, tx *sql.Tx, query string, args ...any) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

func requireUser(ctx context.Context, tx *sql.Tx, name string) error {
	ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("look up user %q: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("user %q: %w", name, store.ErrNotFound)
	}
	return nil
}

func requireEnv(ctx context.Context, tx *sql.Tx, name string) error {
	ok, err := exists(ctx, tx, `SELECT 1 FROM envs WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("look up env %q: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("env %q: %w", name, store.ErrNotFound)
	}
	return nil
}

func requireTarget(ctx context.Context, tx *sql.Tx, name string) error {
	ok, err := exists(ctx, tx, `SELECT 1 FROM targets WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("look up target %q: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("target %q: %w", name, store.ErrNotFound)
	}
	return nil
}

func affected(res sql.Result, err error, notFound error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound
	}
	return nil
}

// ---- users ----

func (s *Store) AddUser(ctx context.Context, u gate.User) error {
	if u.Name == "" {
		return errors.New("add user: empty name")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO users(name, password_hash, created_at) VALUES (?, ?, ?)`,
		u.Name, u.PasswordHash, toDB(u.CreatedAt))
	if isUniqueViolation(err) {
		return fmt.Errorf("user %q: %w", u.Name, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("add user %q: %w", u.Name, err)
	}
	return nil
}

func (s *Store) GetUser(ctx context.Context, name string) (gate.User, error) {
	var u gate.User
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT name, password_hash, created_at FROM users WHERE name = ?`, name).
		Scan(&u.Name, &u.PasswordHash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return gate.User{}, fmt.Errorf("user %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return gate.User{}, fmt.Errorf("get user %q: %w", name, err)
	}
	u.CreatedAt = fromDB(created)
	return u, nil
}

func (s *Store) ListUsers(ctx context.Context) ([]gate.User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, password_hash, created_at FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	out := []gate.User{}
	for rows.Next() {
		var u gate.User
		var created int64
		if err := rows.Scan(&u.Name, &u.PasswordHash, &created); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		u.CreatedAt = fromDB(created)
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

func (s *Store) SetPassword(ctx context.Context, name, hash string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE name = ?`, hash, name)
	if err := affected(res, err, fmt.Errorf("user %q: %w", name, store.ErrNotFound)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("set password of %q: %w", name, err)
	}
	return nil
}

func (s *Store) RemoveUser(ctx context.Context, name string) error {
	// Keys and grants go with the user through ON DELETE CASCADE.
	res, err := s.db.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
	if err := affected(res, err, fmt.Errorf("user %q: %w", name, store.ErrNotFound)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("remove user %q: %w", name, err)
	}
	return nil
}

// ---- keys ----

func (s *Store) AddKey(ctx context.Context, k gate.Key) error {
	if k.Fingerprint == "" {
		return fmt.Errorf("add key for %q: empty fingerprint", k.User)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireUser(ctx, tx, k.User); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO keys(user, fingerprint, authorized_key, comment, created_at) VALUES (?, ?, ?, ?, ?)`,
			k.User, k.Fingerprint, k.AuthorizedKey, k.Comment, toDB(k.CreatedAt))
		if isUniqueViolation(err) {
			return fmt.Errorf("key %s of user %q: %w", k.Fingerprint, k.User, store.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("add key for %q: %w", k.User, err)
		}
		return nil
	})
}

// ListKeys lists a user's keys, oldest first; an unknown user has none
// (like ListGrants), so the gate's key lookup costs one query.
func (s *Store) ListKeys(ctx context.Context, user string) ([]gate.Key, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT user, fingerprint, authorized_key, comment, created_at FROM keys WHERE user = ? ORDER BY created_at, fingerprint`, user)
	if err != nil {
		return nil, fmt.Errorf("list keys of %q: %w", user, err)
	}
	defer rows.Close()
	out := []gate.Key{}
	for rows.Next() {
		var k gate.Key
		var created int64
		if err := rows.Scan(&k.User, &k.Fingerprint, &k.AuthorizedKey, &k.Comment, &created); err != nil {
			return nil, fmt.Errorf("list keys of %q: %w", user, err)
		}
		k.CreatedAt = fromDB(created)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list keys of %q: %w", user, err)
	}
	return out, nil
}

func (s *Store) RemoveKey(ctx context.Context, user, fingerprint string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireUser(ctx, tx, user); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM keys WHERE user = ? AND fingerprint = ?`, user, fingerprint)
		if err := affected(res, err, fmt.Errorf("key %s of user %q: %w", fingerprint, user, store.ErrNotFound)); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return err
			}
			return fmt.Errorf("remove key of %q: %w", user, err)
		}
		return nil
	})
}

// ---- envs ----

func (s *Store) AddEnv(ctx context.Context, e gate.Env) error {
	if e.Name == "" {
		return errors.New("add env: empty name")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO envs(name, created_at) VALUES (?, ?)`, e.Name, toDB(e.CreatedAt))
	if isUniqueViolation(err) {
		return fmt.Errorf("env %q: %w", e.Name, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("add env %q: %w", e.Name, err)
	}
	return nil
}

func (s *Store) ListEnvs(ctx context.Context) ([]gate.Env, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, created_at FROM envs ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list envs: %w", err)
	}
	defer rows.Close()
	out := []gate.Env{}
	for rows.Next() {
		var e gate.Env
		var created int64
		if err := rows.Scan(&e.Name, &created); err != nil {
			return nil, fmt.Errorf("list envs: %w", err)
		}
		e.CreatedAt = fromDB(created)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list envs: %w", err)
	}
	return out, nil
}

func (s *Store) RemoveEnv(ctx context.Context, name string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireEnv(ctx, tx, name); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM targets WHERE env = ?`, name).Scan(&n); err != nil {
			return fmt.Errorf("remove env %q: %w", name, err)
		}
		if n > 0 {
			return fmt.Errorf("env %q is used by %d target(s): %w", name, n, store.ErrExists)
		}
		// Grants naming the env go with it through ON DELETE CASCADE.
		if _, err := tx.ExecContext(ctx, `DELETE FROM envs WHERE name = ?`, name); err != nil {
			return fmt.Errorf("remove env %q: %w", name, err)
		}
		return nil
	})
}

// ---- targets ----

// spec is the JSON column: the kind-specific part of a target.
type spec struct {
	Upstream *gate.UpstreamSpec   `json:",omitempty"`
	Docker   *gate.DockerSpec     `json:",omitempty"`
	Kube     *gate.KubernetesSpec `json:"Kubernetes,omitempty"`
}

func checkTarget(t gate.Target) error {
	if t.Name == "" {
		return errors.New("empty target name")
	}
	if t.Env == "" {
		return fmt.Errorf("target %q: no env", t.Name)
	}
	switch t.Kind {
	case gate.KindUpstream:
		if t.Upstream == nil || t.Docker != nil || t.Kubernetes != nil {
			return fmt.Errorf("target %q: kind %s wants an upstream spec only", t.Name, t.Kind)
		}
	case gate.KindDocker:
		if t.Docker == nil || t.Upstream != nil || t.Kubernetes != nil {
			return fmt.Errorf("target %q: kind %s wants a docker spec only", t.Name, t.Kind)
		}
	case gate.KindKubernetes:
		if t.Kubernetes == nil || t.Upstream != nil || t.Docker != nil {
			return fmt.Errorf("target %q: kind %s wants a kubernetes spec only", t.Name, t.Kind)
		}
	default:
		return fmt.Errorf("target %q: unknown kind %q", t.Name, t.Kind)
	}
	return nil
}

func (s *Store) AddTarget(ctx context.Context, t gate.Target) error {
	if err := checkTarget(t); err != nil {
		return fmt.Errorf("add target: %w", err)
	}
	js, err := json.Marshal(spec{Upstream: t.Upstream, Docker: t.Docker, Kube: t.Kubernetes})
	if err != nil {
		return fmt.Errorf("add target %q: %w", t.Name, err)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireEnv(ctx, tx, t.Env); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO targets(name, env, kind, login, spec, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			t.Name, t.Env, t.Kind, t.Login, string(js), toDB(t.CreatedAt))
		if isUniqueViolation(err) {
			return fmt.Errorf("target %q: %w", t.Name, store.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("add target %q: %w", t.Name, err)
		}
		return nil
	})
}

// UpdateTarget replaces everything but the name and CreatedAt.
func (s *Store) UpdateTarget(ctx context.Context, t gate.Target) error {
	if err := checkTarget(t); err != nil {
		return fmt.Errorf("update target: %w", err)
	}
	js, err := json.Marshal(spec{Upstream: t.Upstream, Docker: t.Docker, Kube: t.Kubernetes})
	if err != nil {
		return fmt.Errorf("update target %q: %w", t.Name, err)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireTarget(ctx, tx, t.Name); err != nil {
			return err
		}
		if err := requireEnv(ctx, tx, t.Env); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE targets SET env = ?, kind = ?, login = ?, spec = ? WHERE name = ?`,
			t.Env, t.Kind, t.Login, string(js), t.Name); err != nil {
			return fmt.Errorf("update target %q: %w", t.Name, err)
		}
		return nil
	})
}

type scanner interface{ Scan(dest ...any) error }

func scanTarget(r scanner) (gate.Target, error) {
	var t gate.Target
	var js string
	var created int64
	if err := r.Scan(&t.Name, &t.Env, &t.Kind, &t.Login, &js, &created); err != nil {
		return gate.Target{}, err
	}
	var sp spec
	if err := json.Unmarshal([]byte(js), &sp); err != nil {
		return gate.Target{}, fmt.Errorf("target %q: bad spec: %w", t.Name, err)
	}
	t.Upstream, t.Docker, t.Kubernetes = sp.Upstream, sp.Docker, sp.Kube
	t.CreatedAt = fromDB(created)
	return t, nil
}

const targetCols = `name, env, kind, login, spec, created_at`

func (s *Store) GetTarget(ctx context.Context, name string) (gate.Target, error) {
	t, err := scanTarget(s.db.QueryRowContext(ctx, `SELECT `+targetCols+` FROM targets WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return gate.Target{}, fmt.Errorf("target %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return gate.Target{}, fmt.Errorf("get target %q: %w", name, err)
	}
	return t, nil
}

func (s *Store) ListTargets(ctx context.Context) ([]gate.Target, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+targetCols+` FROM targets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	defer rows.Close()
	out := []gate.Target{}
	for rows.Next() {
		t, err := scanTarget(rows)
		if err != nil {
			return nil, fmt.Errorf("list targets: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	return out, nil
}

func (s *Store) RemoveTarget(ctx context.Context, name string) error {
	// Grants naming the target go with it through ON DELETE CASCADE.
	res, err := s.db.ExecContext(ctx, `DELETE FROM targets WHERE name = ?`, name)
	if err := affected(res, err, fmt.Errorf("target %q: %w", name, store.ErrNotFound)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("remove target %q: %w", name, err)
	}
	return nil
}

// ---- grants ----

func controlsJSON(c gate.Controls) string {
	b, _ := json.Marshal(c) // cannot fail: bools, a string and durations
	return string(b)
}

// forwardToJSON is gate.Grant.ForwardTo as stored: "" for none.
func forwardToJSON(to []string) string {
	if len(to) == 0 {
		return ""
	}
	b, _ := json.Marshal(to) // cannot fail: strings
	return string(b)
}

func forwardToFromDB(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var to []string
	if err := json.Unmarshal([]byte(s), &to); err != nil || len(to) == 0 {
		return nil, fmt.Errorf("forward_to %q is not a list of destinations", s)
	}
	return to, nil
}

func nullable(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func (s *Store) AddGrant(ctx context.Context, g gate.Grant) (gate.Grant, error) {
	if (g.Env == "") == (g.Target == "") {
		return gate.Grant{}, fmt.Errorf("add grant for %q: exactly one of env and target must be set", g.User)
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = time.Now()
	}
	g.CreatedAt = fromDB(toDB(g.CreatedAt))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireUser(ctx, tx, g.User); err != nil {
			return err
		}
		if g.Env != "" {
			if err := requireEnv(ctx, tx, g.Env); err != nil {
				return err
			}
		} else if err := requireTarget(ctx, tx, g.Target); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO grants(user, env, target, login, forwarding, controls, forward_to, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			g.User, nullable(g.Env), nullable(g.Target), g.Login, g.Forwarding, controlsJSON(g.Controls), forwardToJSON(g.ForwardTo), toDB(g.CreatedAt))
		if isFKViolation(err) {
			return fmt.Errorf("grant for %q: %w", g.User, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("add grant for %q: %w", g.User, err)
		}
		g.ID, err = res.LastInsertId()
		if err != nil {
			return fmt.Errorf("add grant for %q: %w", g.User, err)
		}
		return nil
	})
	if err != nil {
		return gate.Grant{}, err
	}
	return g, nil
}

func (s *Store) ListGrants(ctx context.Context, user string) ([]gate.Grant, error) {
	q := `SELECT id, user, env, target, login, forwarding, controls, forward_to, created_at FROM grants`
	var args []any
	if user != "" {
		q += ` WHERE user = ?`
		args = append(args, user)
	}
	q += ` ORDER BY id`
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	defer rows.Close()
	out := []gate.Grant{}
	for rows.Next() {
		var g gate.Grant
		var env, target sql.NullString
		var created int64
		var controls, forwardTo string
		if err := rows.Scan(&g.ID, &g.User, &env, &target, &g.Login, &g.Forwarding, &controls, &forwardTo, &created); err != nil {
			return nil, fmt.Errorf("list grants: %w", err)
		}
		if err := json.Unmarshal([]byte(controls), &g.Controls); err != nil {
			return nil, fmt.Errorf("list grants: grant %d controls: %w", g.ID, err)
		}
		var err error
		if g.ForwardTo, err = forwardToFromDB(forwardTo); err != nil {
			return nil, fmt.Errorf("list grants: grant %d: %w", g.ID, err)
		}
		g.Env, g.Target = env.String, target.String
		g.CreatedAt = fromDB(created)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	return out, nil
}

func (s *Store) RemoveGrant(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM grants WHERE id = ?`, id)
	if err := affected(res, err, fmt.Errorf("grant %d: %w", id, store.ErrNotFound)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("remove grant %d: %w", id, err)
	}
	return nil
}
