// Package postgres is store.Store on PostgreSQL through pgx v5 (pgxpool),
// for several gates sharing one database. Nothing is cached, so every read
// sees the latest committed write of any gate or admin CLI. The schema grows
// by ordered, forward-only migrations recorded in schema_version; a start
// that migrates holds a transaction-scoped advisory lock, so gates starting at
// once migrate one after the other. Text keys use the "C" collation, so
// listings sort by bytes as they do on SQLite, whatever the database's locale.
//
// It imports store and gate only: no ssh, policy or target package.
//
// Must not import: store/sqlite store/storetest broker sshd/... relay target/... auth/... policy app
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// Options say how to reach the database.
type Options struct {
	DSN      string // a postgres:// URL or a keyword/value string
	Password string // overrides a password in DSN when not empty
	SSLMode  string // overrides sslmode in DSN when not empty
	CAFile   string // sslrootcert: the CA that signs the server's certificate
	MaxConns int32  // pool size; 0: pgxpool's default
}

// Store is store.Store on one PostgreSQL database (its search_path schema).
type Store struct {
	pool     *pgxpool.Pool
	from, to int // schema versions before and after Open
}

var _ store.Store = (*Store)(nil)

// SchemaVersion is the version Open brings a database to.
var SchemaVersion = len(migrations)

// Open connects, checks the server answers and migrates the schema.
func Open(ctx context.Context, o Options) (*Store, error) {
	return open(ctx, o, migrations)
}

func open(ctx context.Context, o Options, migs []string) (*Store, error) {
	cfg, err := parseConfig(o)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{pool: pool}
	if err := s.migrate(ctx, migs); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", describe(cfg), oneLine{err})
	}
	return s, nil
}

// oneLine shows an error on one line: pgx lists each connection attempt
// (several hosts, TLS then plain) on a line of its own. Repeated lines show
// once. errors.Is and As see the error it wraps.
type oneLine struct{ err error }

func (e oneLine) Unwrap() error { return e.err }

func (e oneLine) Error() string {
	var parts []string
	seen := map[string]bool{}
	for _, l := range strings.Split(e.err.Error(), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !seen[l] {
			seen[l] = true
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

// parseConfig applies Options to the DSN. The error never repeats the DSN,
// which may hold a password.
func parseConfig(o Options) (*pgxpool.Config, error) {
	if strings.TrimSpace(o.DSN) == "" {
		return nil, errors.New("open store: empty postgres dsn")
	}
	dsn := o.DSN
	if o.CAFile != "" {
		if _, err := os.ReadFile(o.CAFile); err != nil {
			return nil, fmt.Errorf("open store: ca file: %w", err)
		}
	}
	if o.SSLMode != "" || o.CAFile != "" {
		var err error
		if dsn, err = withParams(dsn, map[string]string{"sslmode": o.SSLMode, "sslrootcert": o.CAFile}); err != nil {
			return nil, err
		}
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("open store: cannot parse the postgres dsn (want postgres://user@host:port/db or host=... dbname=...)")
	}
	if o.Password != "" {
		cfg.ConnConfig.Password = o.Password
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	return cfg, nil
}

// withParams sets connection parameters (empty values are skipped) in a URL
// or keyword/value DSN.
func withParams(dsn string, params map[string]string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errors.New("open store: cannot parse the postgres dsn as a URL")
		}
		q := u.Query()
		for k, v := range params {
			if v != "" {
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	for _, k := range []string{"sslmode", "sslrootcert"} {
		if v := params[k]; v != "" {
			dsn += " " + k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
		}
	}
	return dsn, nil
}

// describe names the database without its password, for errors and logs.
func describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("postgres %s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// Migrated reports the schema versions before and after Open: from < to
// when this Open migrated the database.
func (s *Store) Migrated() (from, to int) { return s.from, s.to }

// migrationLockKey names the advisory lock migrations take: one per schema.
const migrationLockKey = `hashtext('sshgate schema_version ' || COALESCE(current_schema(), ''))`

func (s *Store) migrate(ctx context.Context, migs []string) error {
	// The common case, an up-to-date database, takes no lock.
	var cur *int
	err := s.pool.QueryRow(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&cur)
	if err == nil && cur != nil && *cur >= len(migs) {
		if *cur > len(migs) {
			return newerError(*cur, len(migs))
		}
		s.from, s.to = *cur, *cur
		return nil
	}
	if err != nil && !isUndefinedTable(err) {
		return fmt.Errorf("read schema version: %w", err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(`+migrationLockKey+`)`); err != nil {
		return fmt.Errorf("lock for migration: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migs) {
		return newerError(v, len(migs))
	}
	for i := v; i < len(migs); i++ {
		if _, err := tx.Exec(ctx, migs[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if v < len(migs) {
		if _, err := tx.Exec(ctx, `DELETE FROM schema_version`); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_version(version) VALUES ($1)`, len(migs)); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
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
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping store: %w", oneLine{err})
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func isUniqueViolation(err error) bool { return pgCode(err) == "23505" }
func isFKViolation(err error) bool     { return pgCode(err) == "23503" }
func isUndefinedTable(err error) bool  { return pgCode(err) == "42P01" }

func toDB(t time.Time) int64 {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UnixNano()
}

func fromDB(n int64) time.Time { return time.Unix(0, n).UTC() }

// querier is what both the pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) inTx(ctx context.Context, f func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func exists(ctx context.Context, q querier, query string, args ...any) (bool, error) {
	var one int
	err := q.QueryRow(ctx, query, args...).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

func requireUser(ctx context.Context, q querier, name string) error {
	ok, err := exists(ctx, q, `SELECT 1 FROM users WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("look up user %q: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("user %q: %w", name, store.ErrNotFound)
	}
	return nil
}

func requireEnv(ctx context.Context, q querier, name string) error {
	ok, err := exists(ctx, q, `SELECT 1 FROM envs WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("look up env %q: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("env %q: %w", name, store.ErrNotFound)
	}
	return nil
}

func requireTarget(ctx context.Context, q querier, name string) error {
	ok, err := exists(ctx, q, `SELECT 1 FROM targets WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("look up target %q: %w", name, err)
	}
	if !ok {
		return fmt.Errorf("target %q: %w", name, store.ErrNotFound)
	}
	return nil
}

// affected turns "no row changed" into notFound.
func affected(tag pgconn.CommandTag, err error, notFound error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return notFound
	}
	return nil
}

// orWrap returns a not-found error as it is and wraps any other with op.
func orWrap(err error, op string) error {
	if err == nil || errors.Is(err, store.ErrNotFound) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}

// collect reads every row with scan.
func collect[T any](rows pgx.Rows, err error, scan func(pgx.Rows) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// ---- users ----

func (s *Store) AddUser(ctx context.Context, u gate.User) error {
	if u.Name == "" {
		return errors.New("add user: empty name")
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO users(name, password_hash, created_at) VALUES ($1, $2, $3)`,
		u.Name, u.PasswordHash, toDB(u.CreatedAt))
	if isUniqueViolation(err) {
		return fmt.Errorf("user %q: %w", u.Name, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("add user %q: %w", u.Name, err)
	}
	return nil
}

func scanUser(r pgx.Row) (gate.User, error) {
	var u gate.User
	var created int64
	err := r.Scan(&u.Name, &u.PasswordHash, &created)
	u.CreatedAt = fromDB(created)
	return u, err
}

func (s *Store) GetUser(ctx context.Context, name string) (gate.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT name, password_hash, created_at FROM users WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return gate.User{}, fmt.Errorf("user %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return gate.User{}, fmt.Errorf("get user %q: %w", name, err)
	}
	return u, nil
}

func (s *Store) ListUsers(ctx context.Context) ([]gate.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, password_hash, created_at FROM users ORDER BY name`)
	out, err := collect(rows, err, func(r pgx.Rows) (gate.User, error) { return scanUser(r) })
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

func (s *Store) SetPassword(ctx context.Context, name, hash string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET password_hash = $1 WHERE name = $2`, hash, name)
	return orWrap(affected(tag, err, fmt.Errorf("user %q: %w", name, store.ErrNotFound)), fmt.Sprintf("set password of %q", name))
}

func (s *Store) RemoveUser(ctx context.Context, name string) error {
	// Keys and grants go with the user through ON DELETE CASCADE.
	tag, err := s.pool.Exec(ctx, `DELETE FROM users WHERE name = $1`, name)
	return orWrap(affected(tag, err, fmt.Errorf("user %q: %w", name, store.ErrNotFound)), fmt.Sprintf("remove user %q", name))
}

// ---- keys ----

func (s *Store) AddKey(ctx context.Context, k gate.Key) error {
	if k.Fingerprint == "" {
		return fmt.Errorf("add key for %q: empty fingerprint", k.User)
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireUser(ctx, tx, k.User); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO keys(username, fingerprint, authorized_key, comment, created_at) VALUES ($1, $2, $3, $4, $5)`,
			k.User, k.Fingerprint, k.AuthorizedKey, k.Comment, toDB(k.CreatedAt))
		if isUniqueViolation(err) {
			return fmt.Errorf("key %s of user %q: %w", k.Fingerprint, k.User, store.ErrExists)
		}
		if isFKViolation(err) {
			return fmt.Errorf("user %q: %w", k.User, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("add key for %q: %w", k.User, err)
		}
		return nil
	})
}

// ListKeys lists a user's keys, oldest first; an unknown user has none.
func (s *Store) ListKeys(ctx context.Context, user string) ([]gate.Key, error) {
	rows, err := s.pool.Query(ctx, `SELECT username, fingerprint, authorized_key, comment, created_at FROM keys WHERE username = $1 ORDER BY created_at, fingerprint`, user)
	out, err := collect(rows, err, func(r pgx.Rows) (gate.Key, error) {
		var k gate.Key
		var created int64
		err := r.Scan(&k.User, &k.Fingerprint, &k.AuthorizedKey, &k.Comment, &created)
		k.CreatedAt = fromDB(created)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("list keys of %q: %w", user, err)
	}
	return out, nil
}

func (s *Store) RemoveKey(ctx context.Context, user, fingerprint string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireUser(ctx, tx, user); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM keys WHERE username = $1 AND fingerprint = $2`, user, fingerprint)
		return orWrap(affected(tag, err, fmt.Errorf("key %s of user %q: %w", fingerprint, user, store.ErrNotFound)), fmt.Sprintf("remove key of %q", user))
	})
}

// ---- envs ----

func (s *Store) AddEnv(ctx context.Context, e gate.Env) error {
	if e.Name == "" {
		return errors.New("add env: empty name")
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO envs(name, created_at) VALUES ($1, $2)`, e.Name, toDB(e.CreatedAt))
	if isUniqueViolation(err) {
		return fmt.Errorf("env %q: %w", e.Name, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("add env %q: %w", e.Name, err)
	}
	return nil
}

func (s *Store) ListEnvs(ctx context.Context) ([]gate.Env, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, created_at FROM envs ORDER BY name`)
	out, err := collect(rows, err, func(r pgx.Rows) (gate.Env, error) {
		var e gate.Env
		var created int64
		err := r.Scan(&e.Name, &created)
		e.CreatedAt = fromDB(created)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list envs: %w", err)
	}
	return out, nil
}

func (s *Store) RemoveEnv(ctx context.Context, name string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireEnv(ctx, tx, name); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM targets WHERE env = $1`, name).Scan(&n); err != nil {
			return fmt.Errorf("remove env %q: %w", name, err)
		}
		if n > 0 {
			return fmt.Errorf("env %q is used by %d target(s): %w", name, n, store.ErrExists)
		}
		// Grants naming the env go with it through ON DELETE CASCADE.
		_, err := tx.Exec(ctx, `DELETE FROM envs WHERE name = $1`, name)
		if isFKViolation(err) { // a target added meanwhile
			return fmt.Errorf("env %q is used by a target: %w", name, store.ErrExists)
		}
		if err != nil {
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
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireEnv(ctx, tx, t.Env); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO targets(name, env, kind, login, spec, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			t.Name, t.Env, t.Kind, t.Login, string(js), toDB(t.CreatedAt))
		if isUniqueViolation(err) {
			return fmt.Errorf("target %q: %w", t.Name, store.ErrExists)
		}
		if isFKViolation(err) {
			return fmt.Errorf("env %q: %w", t.Env, store.ErrNotFound)
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
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireTarget(ctx, tx, t.Name); err != nil {
			return err
		}
		if err := requireEnv(ctx, tx, t.Env); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE targets SET env = $1, kind = $2, login = $3, spec = $4 WHERE name = $5`,
			t.Env, t.Kind, t.Login, string(js), t.Name); err != nil {
			return fmt.Errorf("update target %q: %w", t.Name, err)
		}
		return nil
	})
}

func scanTarget(r pgx.Row) (gate.Target, error) {
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
	t, err := scanTarget(s.pool.QueryRow(ctx, `SELECT `+targetCols+` FROM targets WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return gate.Target{}, fmt.Errorf("target %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return gate.Target{}, fmt.Errorf("get target %q: %w", name, err)
	}
	return t, nil
}

func (s *Store) ListTargets(ctx context.Context) ([]gate.Target, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+targetCols+` FROM targets ORDER BY name`)
	out, err := collect(rows, err, func(r pgx.Rows) (gate.Target, error) { return scanTarget(r) })
	if err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	return out, nil
}

func (s *Store) RemoveTarget(ctx context.Context, name string) error {
	// Grants naming the target go with it through ON DELETE CASCADE.
	tag, err := s.pool.Exec(ctx, `DELETE FROM targets WHERE name = $1`, name)
	return orWrap(affected(tag, err, fmt.Errorf("target %q: %w", name, store.ErrNotFound)), fmt.Sprintf("remove target %q", name))
}

// ---- grants ----

// nullable maps "" to NULL.
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

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *Store) AddGrant(ctx context.Context, g gate.Grant) (gate.Grant, error) {
	if (g.Env == "") == (g.Target == "") {
		return gate.Grant{}, fmt.Errorf("add grant for %q: exactly one of env and target must be set", g.User)
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = time.Now()
	}
	g.CreatedAt = fromDB(toDB(g.CreatedAt))
	err := s.inTx(ctx, func(tx pgx.Tx) error {
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
		err := tx.QueryRow(ctx, `INSERT INTO grants(username, env, target, login, forwarding, controls, forward_to, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			g.User, nullable(g.Env), nullable(g.Target), g.Login, g.Forwarding, controlsJSON(g.Controls), forwardToJSON(g.ForwardTo), toDB(g.CreatedAt)).Scan(&g.ID)
		if isFKViolation(err) {
			return fmt.Errorf("grant for %q: %w", g.User, store.ErrNotFound)
		}
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
	q := `SELECT id, username, env, target, login, forwarding, controls, forward_to, created_at FROM grants`
	var args []any
	if user != "" {
		q += ` WHERE username = $1`
		args = append(args, user)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY id`, args...)
	out, err := collect(rows, err, func(r pgx.Rows) (gate.Grant, error) {
		var g gate.Grant
		var env, target *string
		var created int64
		var controls, forwardTo string
		err := r.Scan(&g.ID, &g.User, &env, &target, &g.Login, &g.Forwarding, &controls, &forwardTo, &created)
		if err == nil {
			if err = json.Unmarshal([]byte(controls), &g.Controls); err != nil {
				err = fmt.Errorf("grant %d controls: %w", g.ID, err)
			}
		}
		if err == nil {
			if g.ForwardTo, err = forwardToFromDB(forwardTo); err != nil {
				err = fmt.Errorf("grant %d: %w", g.ID, err)
			}
		}
		if env != nil {
			g.Env = *env
		}
		if target != nil {
			g.Target = *target
		}
		g.CreatedAt = fromDB(created)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	return out, nil
}

func (s *Store) RemoveGrant(ctx context.Context, id int64) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM grants WHERE id = $1`, id)
	return orWrap(affected(tag, err, fmt.Errorf("grant %d: %w", id, store.ErrNotFound)), fmt.Sprintf("remove grant %d", id))
}
