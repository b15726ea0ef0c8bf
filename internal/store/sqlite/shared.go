package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

const sharedStateMigration = `
CREATE TABLE auth_grace (
	username TEXT NOT NULL,
	cred     TEXT NOT NULL,
	addr     TEXT NOT NULL,
	until_ns INTEGER NOT NULL,
	PRIMARY KEY (username, cred, addr)
);
CREATE TABLE auth_failures (
	kind         TEXT NOT NULL,
	username     TEXT NOT NULL,
	window_start INTEGER NOT NULL,
	n            INTEGER NOT NULL,
	locked_until INTEGER NOT NULL,
	PRIMARY KEY (kind, username)
);
CREATE TABLE containers (
	id         TEXT PRIMARY KEY NOT NULL,
	name       TEXT NOT NULL DEFAULT '',
	target     TEXT NOT NULL DEFAULT '',
	spec_key   TEXT NOT NULL DEFAULT '',
	username   TEXT NOT NULL DEFAULT '',
	kind       TEXT NOT NULL,
	gate_id    TEXT NOT NULL DEFAULT '',
	transport  TEXT NOT NULL DEFAULT '',
	dir        TEXT NOT NULL DEFAULT '',
	host_key   TEXT NOT NULL DEFAULT '',
	run_as     TEXT NOT NULL DEFAULT '',
	idle_ttl   INTEGER NOT NULL DEFAULT 0,
	last_used  INTEGER NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX containers_per_user ON containers(spec_key, username) WHERE kind = 'user';
CREATE INDEX containers_gate ON containers(gate_id);
`

// ---- TOTP grace windows and per-account failure counters ----

func (s *Store) PutTOTPGrace(ctx context.Context, user, cred, addr string, until time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM auth_grace WHERE username = ? AND until_ns < ?`, user, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("put totp grace of %q: %w", user, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO auth_grace(username, cred, addr, until_ns) VALUES (?, ?, ?, ?)
			ON CONFLICT(username, cred, addr) DO UPDATE SET until_ns = excluded.until_ns`, user, cred, addr, until.UnixNano()); err != nil {
			return fmt.Errorf("put totp grace of %q: %w", user, err)
		}
		return nil
	})
}

func (s *Store) TOTPGraceUntil(ctx context.Context, user, cred, addr string) (time.Time, error) {
	var until int64
	err := s.db.QueryRowContext(ctx, `SELECT until_ns FROM auth_grace WHERE username = ? AND cred = ? AND addr = ?`, user, cred, addr).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("get totp grace of %q: %w", user, err)
	}
	return fromDB(until), nil
}

// countFailureSQL is one upsert, so failures counted by two gates at once
// both count. Parameters: kind, user, now, window, limit, lock (ns).
const countFailureSQL = `
INSERT INTO auth_failures AS f (kind, username, window_start, n, locked_until)
VALUES (?1, ?2, ?3, CASE WHEN ?5 <= 1 THEN 0 ELSE 1 END, CASE WHEN ?5 <= 1 THEN ?3 + ?6 ELSE 0 END)
ON CONFLICT (kind, username) DO UPDATE SET
	window_start = CASE WHEN ((CASE WHEN ?3 - f.window_start >= ?4 THEN 1 ELSE f.n + 1 END) >= ?5 AND ?3 >= f.locked_until)
		OR ?3 - f.window_start >= ?4 THEN ?3 ELSE f.window_start END,
	n = CASE WHEN (CASE WHEN ?3 - f.window_start >= ?4 THEN 1 ELSE f.n + 1 END) >= ?5 AND ?3 >= f.locked_until THEN 0
		ELSE (CASE WHEN ?3 - f.window_start >= ?4 THEN 1 ELSE f.n + 1 END) END,
	locked_until = CASE WHEN (CASE WHEN ?3 - f.window_start >= ?4 THEN 1 ELSE f.n + 1 END) >= ?5 AND ?3 >= f.locked_until
		THEN ?3 + ?6 ELSE f.locked_until END
RETURNING locked_until`

func (s *Store) CountFailure(ctx context.Context, kind, user string, at time.Time, limit int, window, lock time.Duration) (time.Time, bool, error) {
	if limit <= 0 {
		return time.Time{}, false, errors.New("count failure: limit must be positive")
	}
	now := at.UnixNano()
	var until int64
	if err := s.db.QueryRowContext(ctx, countFailureSQL, kind, user, now, int64(window), limit, int64(lock)).Scan(&until); err != nil {
		return time.Time{}, false, fmt.Errorf("count %s failure of %q: %w", kind, user, err)
	}
	if until == 0 {
		return time.Time{}, false, nil
	}
	return fromDB(until), until == now+int64(lock), nil
}

func (s *Store) FailureLockedUntil(ctx context.Context, kind, user string) (time.Time, error) {
	var until int64
	err := s.db.QueryRowContext(ctx, `SELECT locked_until FROM auth_failures WHERE kind = ? AND username = ?`, kind, user).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && until == 0) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read %s lock of %q: %w", kind, user, err)
	}
	return fromDB(until), nil
}

// ---- the registry of warm containers ----

const containerCols = `id, name, target, spec_key, username, kind, gate_id, transport, dir, host_key, run_as, idle_ttl, last_used, created_at`

// deadOrFree is the owner condition for adopting or reaping: mine, free, or
// a gate whose heartbeat is older than the alive time (parameter :A).
const deadOrFree = `(gate_id = :G OR gate_id = '' OR gate_id NOT IN (SELECT id FROM gates WHERE heartbeat >= :A))`

func scanContainer(sc interface{ Scan(...any) error }) (gate.WarmContainer, error) {
	var c gate.WarmContainer
	var ttl, used, created int64
	err := sc.Scan(&c.ID, &c.Name, &c.Target, &c.Key, &c.User, &c.Kind, &c.Gate, &c.Transport, &c.Dir, &c.HostKey, &c.RunAs, &ttl, &used, &created)
	c.IdleTTL, c.LastUsed, c.Created = time.Duration(ttl), fromDB(used), fromDB(created)
	return c, err
}

func (s *Store) PutContainer(ctx context.Context, c gate.WarmContainer) error {
	if c.ID == "" || c.Kind == "" {
		return errors.New("put container: empty id or kind")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO containers(`+containerCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Name, c.Target, c.Key, c.User, c.Kind, c.Gate, c.Transport, c.Dir, c.HostKey, c.RunAs, int64(c.IdleTTL), toDB(c.LastUsed), toDB(c.Created))
	if isUniqueViolation(err) {
		return fmt.Errorf("container %s: %w", c.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("put container %s: %w", c.ID, err)
	}
	return nil
}

func (s *Store) ReplaceContainer(ctx context.Context, oldID string, c gate.WarmContainer) error {
	if c.ID == "" || c.Kind == "" {
		return errors.New("replace container: empty id or kind")
	}
	res, err := s.db.ExecContext(ctx, `UPDATE containers SET id = ?1, name = ?2, target = ?3, spec_key = ?4, username = ?5, kind = ?6,
		transport = ?8, dir = ?9, host_key = ?10, run_as = ?11, idle_ttl = ?12, last_used = ?13, created_at = ?14
		WHERE id = ?15 AND gate_id = ?7`,
		c.ID, c.Name, c.Target, c.Key, c.User, c.Kind, c.Gate, c.Transport, c.Dir, c.HostKey, c.RunAs, int64(c.IdleTTL), toDB(c.LastUsed), toDB(c.Created), oldID)
	if isUniqueViolation(err) {
		return fmt.Errorf("container %s: %w", c.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("replace container %s: %w", oldID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("container %s of gate %q: %w", oldID, c.Gate, store.ErrNotFound)
	}
	return nil
}

func (s *Store) ClaimContainer(ctx context.Context, key, user, gateID string, alive time.Time) (gate.WarmContainer, bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE containers SET gate_id = :G WHERE kind = 'user' AND spec_key = :K AND username = :U AND gate_id <> :G
		AND (gate_id = '' OR gate_id NOT IN (SELECT id FROM gates WHERE heartbeat >= :A))`,
		sql.Named("G", gateID), sql.Named("K", key), sql.Named("U", user), sql.Named("A", alive.UnixNano()))
	if err != nil {
		return gate.WarmContainer{}, false, fmt.Errorf("claim container of %q: %w", user, err)
	}
	n, _ := res.RowsAffected()
	c, err := scanContainer(s.db.QueryRowContext(ctx, `SELECT `+containerCols+` FROM containers WHERE kind = 'user' AND spec_key = ? AND username = ?`, key, user))
	if errors.Is(err, sql.ErrNoRows) {
		return gate.WarmContainer{}, false, fmt.Errorf("container of %q: %w", user, store.ErrNotFound)
	}
	if err != nil {
		return gate.WarmContainer{}, false, fmt.Errorf("claim container of %q: %w", user, err)
	}
	return c, n == 1, nil
}

func (s *Store) TakePooled(ctx context.Context, key, gateID string, alive, at time.Time) (gate.WarmContainer, error) {
	c, err := scanContainer(s.db.QueryRowContext(ctx, `UPDATE containers SET kind = 'connection', gate_id = :G, last_used = :T
		WHERE id = (SELECT id FROM containers WHERE kind = 'pool' AND spec_key = :K AND `+deadOrFree+` ORDER BY created_at, id LIMIT 1)
		RETURNING `+containerCols,
		sql.Named("G", gateID), sql.Named("K", key), sql.Named("A", alive.UnixNano()), sql.Named("T", toDB(at))))
	if errors.Is(err, sql.ErrNoRows) {
		return gate.WarmContainer{}, fmt.Errorf("pool container for %s: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return gate.WarmContainer{}, fmt.Errorf("take pool container: %w", err)
	}
	return c, nil
}

func (s *Store) TouchContainers(ctx context.Context, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	args := []any{toDB(at)}
	for _, id := range ids {
		args = append(args, id)
	}
	q := `UPDATE containers SET last_used = ?1 WHERE last_used < ?1 AND id IN (` + strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",") + `)`
	q = numbered(q)
	if _, err := s.db.DB.ExecContext(ctx, q, args...); err != nil { // not kept: its placeholders vary
		return fmt.Errorf("touch containers: %w", err)
	}
	return nil
}

func (s *Store) ListContainers(ctx context.Context) ([]gate.WarmContainer, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+containerCols+` FROM containers ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	defer rows.Close()
	out := []gate.WarmContainer{}
	for rows.Next() {
		c, err := scanContainer(rows)
		if err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	return out, nil
}

func (s *Store) ReleaseContainers(ctx context.Context, gateID string) (int, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE containers SET gate_id = '' WHERE gate_id = ? AND kind IN ('user', 'pool')`, gateID)
	if err != nil {
		return 0, fmt.Errorf("hand over containers of gate %q: %w", gateID, err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (s *Store) ClaimRemoval(ctx context.Context, id, gateID string, alive, idleBefore time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM containers WHERE id = :I AND `+deadOrFree+` AND (kind = 'connection' OR last_used < :B)`,
		sql.Named("I", id), sql.Named("G", gateID), sql.Named("A", alive.UnixNano()), sql.Named("B", idleBefore.UnixNano()))
	if err != nil {
		return false, fmt.Errorf("claim removal of container %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (s *Store) RemoveContainer(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM containers WHERE id = ?`, id); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

// ---- batched live-session byte counts ----

func (s *Store) UpdateLiveSessions(ctx context.Context, counts []gate.LiveCount) error {
	if len(counts) == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		const chunk = 1000
		for i := 0; i < len(counts); i += chunk {
			part := counts[i:min(i+chunk, len(counts))]
			args := []any{now}
			for _, c := range part {
				args = append(args, c.ID, c.BytesIn, c.BytesOut)
			}
			q := `WITH v(id, i, o) AS (VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?, ?),", len(part)), ",") + `)
				UPDATE live_sessions SET bytes_in = v.i, bytes_out = v.o, updated_at = ?1 FROM v WHERE live_sessions.id = v.id`
			// ?1 is now: the values take ?2 onwards.
			if _, err := tx.ExecContext(ctx, numbered(q), args...); err != nil {
				return fmt.Errorf("update live sessions: %w", err)
			}
		}
		return nil
	})
}

// numbered turns the plain ? of q into ?2, ?3, ... (?1 is left as written).
func numbered(q string) string {
	var b strings.Builder
	n := 2
	for i := 0; i < len(q); i++ {
		if q[i] == '?' && (i+1 >= len(q) || q[i+1] < '0' || q[i+1] > '9') {
			fmt.Fprintf(&b, "?%d", n)
			n++
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}
