package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

const sharedStateMigration = `
CREATE TABLE auth_grace (
	username TEXT COLLATE "C" NOT NULL,
	cred     TEXT COLLATE "C" NOT NULL,
	addr     TEXT COLLATE "C" NOT NULL,
	until_ns BIGINT NOT NULL,
	PRIMARY KEY (username, cred, addr)
);
CREATE TABLE auth_failures (
	kind         TEXT COLLATE "C" NOT NULL,
	username     TEXT COLLATE "C" NOT NULL,
	window_start BIGINT NOT NULL,
	n            BIGINT NOT NULL,
	locked_until BIGINT NOT NULL,
	PRIMARY KEY (kind, username)
);
CREATE TABLE containers (
	id         TEXT COLLATE "C" PRIMARY KEY,
	name       TEXT NOT NULL DEFAULT '',
	target     TEXT COLLATE "C" NOT NULL DEFAULT '',
	spec_key   TEXT COLLATE "C" NOT NULL DEFAULT '',
	username   TEXT COLLATE "C" NOT NULL DEFAULT '',
	kind       TEXT NOT NULL,
	gate_id    TEXT COLLATE "C" NOT NULL DEFAULT '',
	transport  TEXT NOT NULL DEFAULT '',
	dir        TEXT NOT NULL DEFAULT '',
	host_key   TEXT NOT NULL DEFAULT '',
	run_as     TEXT NOT NULL DEFAULT '',
	idle_ttl   BIGINT NOT NULL DEFAULT 0,
	last_used  BIGINT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX containers_per_user ON containers(spec_key, username) WHERE kind = 'user';
CREATE INDEX containers_gate ON containers(gate_id);
`

// ---- TOTP grace windows and per-account failure counters ----

func (s *Store) PutTOTPGrace(ctx context.Context, user, cred, addr string, until time.Time) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM auth_grace WHERE username = $1 AND until_ns < $2`, user, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("put totp grace of %q: %w", user, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO auth_grace(username, cred, addr, until_ns) VALUES ($1, $2, $3, $4)
			ON CONFLICT (username, cred, addr) DO UPDATE SET until_ns = excluded.until_ns`, user, cred, addr, until.UnixNano()); err != nil {
			return fmt.Errorf("put totp grace of %q: %w", user, err)
		}
		return nil
	})
}

func (s *Store) TOTPGraceUntil(ctx context.Context, user, cred, addr string) (time.Time, error) {
	var until int64
	err := s.pool.QueryRow(ctx, `SELECT until_ns FROM auth_grace WHERE username = $1 AND cred = $2 AND addr = $3`, user, cred, addr).Scan(&until)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("get totp grace of %q: %w", user, err)
	}
	return fromDB(until), nil
}

// countFailureSQL is one upsert (the row lock orders racing gates), so
// failures counted by two gates at once both count. Parameters: kind,
// user, now, window, limit, lock (ns).
const countFailureSQL = `
INSERT INTO auth_failures AS f (kind, username, window_start, n, locked_until)
VALUES ($1, $2, $3::bigint, CASE WHEN $5::bigint <= 1 THEN 0 ELSE 1 END, CASE WHEN $5::bigint <= 1 THEN $3::bigint + $6::bigint ELSE 0 END)
ON CONFLICT (kind, username) DO UPDATE SET
	window_start = CASE WHEN ((CASE WHEN $3 - f.window_start >= $4::bigint THEN 1 ELSE f.n + 1 END) >= $5 AND $3 >= f.locked_until)
		OR $3 - f.window_start >= $4 THEN $3 ELSE f.window_start END,
	n = CASE WHEN (CASE WHEN $3 - f.window_start >= $4 THEN 1 ELSE f.n + 1 END) >= $5 AND $3 >= f.locked_until THEN 0
		ELSE (CASE WHEN $3 - f.window_start >= $4 THEN 1 ELSE f.n + 1 END) END,
	locked_until = CASE WHEN (CASE WHEN $3 - f.window_start >= $4 THEN 1 ELSE f.n + 1 END) >= $5 AND $3 >= f.locked_until
		THEN $3 + $6 ELSE f.locked_until END
RETURNING locked_until`

func (s *Store) CountFailure(ctx context.Context, kind, user string, at time.Time, limit int, window, lock time.Duration) (time.Time, bool, error) {
	if limit <= 0 {
		return time.Time{}, false, errors.New("count failure: limit must be positive")
	}
	now := at.UnixNano()
	var until int64
	if err := s.pool.QueryRow(ctx, countFailureSQL, kind, user, now, int64(window), int64(limit), int64(lock)).Scan(&until); err != nil {
		return time.Time{}, false, fmt.Errorf("count %s failure of %q: %w", kind, user, err)
	}
	if until == 0 {
		return time.Time{}, false, nil
	}
	return fromDB(until), until == now+int64(lock), nil
}

func (s *Store) FailureLockedUntil(ctx context.Context, kind, user string) (time.Time, error) {
	var until int64
	err := s.pool.QueryRow(ctx, `SELECT locked_until FROM auth_failures WHERE kind = $1 AND username = $2`, kind, user).Scan(&until)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && until == 0) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read %s lock of %q: %w", kind, user, err)
	}
	return fromDB(until), nil
}

// ---- the registry of warm containers ----

const containerCols = `id, name, target, spec_key, username, kind, gate_id, transport, dir, host_key, run_as, idle_ttl, last_used, created_at`

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
	_, err := s.pool.Exec(ctx, `INSERT INTO containers(`+containerCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
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
	tag, err := s.pool.Exec(ctx, `UPDATE containers SET id = $1, name = $2, target = $3, spec_key = $4, username = $5, kind = $6,
		transport = $8, dir = $9, host_key = $10, run_as = $11, idle_ttl = $12, last_used = $13, created_at = $14
		WHERE id = $15 AND gate_id = $7`,
		c.ID, c.Name, c.Target, c.Key, c.User, c.Kind, c.Gate, c.Transport, c.Dir, c.HostKey, c.RunAs, int64(c.IdleTTL), toDB(c.LastUsed), toDB(c.Created), oldID)
	if isUniqueViolation(err) {
		return fmt.Errorf("container %s: %w", c.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("replace container %s: %w", oldID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("container %s of gate %q: %w", oldID, c.Gate, store.ErrNotFound)
	}
	return nil
}

func (s *Store) ClaimContainer(ctx context.Context, key, user, gateID string, alive time.Time) (gate.WarmContainer, bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE containers SET gate_id = $1 WHERE kind = 'user' AND spec_key = $2 AND username = $3 AND gate_id <> $1
		AND (gate_id = '' OR gate_id NOT IN (SELECT id FROM gates WHERE heartbeat >= $4))`, gateID, key, user, alive.UnixNano())
	if err != nil {
		return gate.WarmContainer{}, false, fmt.Errorf("claim container of %q: %w", user, err)
	}
	c, err := scanContainer(s.pool.QueryRow(ctx, `SELECT `+containerCols+` FROM containers WHERE kind = 'user' AND spec_key = $1 AND username = $2`, key, user))
	if errors.Is(err, pgx.ErrNoRows) {
		return gate.WarmContainer{}, false, fmt.Errorf("container of %q: %w", user, store.ErrNotFound)
	}
	if err != nil {
		return gate.WarmContainer{}, false, fmt.Errorf("claim container of %q: %w", user, err)
	}
	return c, tag.RowsAffected() == 1, nil
}

// TakePooled skips rows another gate is taking (SKIP LOCKED) and checks the
// row is still in the pool once locked, so two gates never take one.
func (s *Store) TakePooled(ctx context.Context, key, gateID string, alive, at time.Time) (gate.WarmContainer, error) {
	c, err := scanContainer(s.pool.QueryRow(ctx, `UPDATE containers SET kind = 'connection', gate_id = $1, last_used = $4
		WHERE kind = 'pool' AND id = (SELECT id FROM containers WHERE kind = 'pool' AND spec_key = $2
			AND (gate_id = $1 OR gate_id = '' OR gate_id NOT IN (SELECT id FROM gates WHERE heartbeat >= $3))
			ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING `+containerCols, gateID, key, alive.UnixNano(), toDB(at)))
	if errors.Is(err, pgx.ErrNoRows) {
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
	if _, err := s.pool.Exec(ctx, `UPDATE containers SET last_used = $1 WHERE id = ANY($2) AND last_used < $1`, toDB(at), ids); err != nil {
		return fmt.Errorf("touch containers: %w", err)
	}
	return nil
}

func (s *Store) ListContainers(ctx context.Context) ([]gate.WarmContainer, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+containerCols+` FROM containers ORDER BY created_at, id`)
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
	tag, err := s.pool.Exec(ctx, `UPDATE containers SET gate_id = '' WHERE gate_id = $1 AND kind IN ('user', 'pool')`, gateID)
	if err != nil {
		return 0, fmt.Errorf("hand over containers of gate %q: %w", gateID, err)
	}
	return int(tag.RowsAffected()), nil
}

func (s *Store) ClaimRemoval(ctx context.Context, id, gateID string, alive, idleBefore time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM containers WHERE id = $1
		AND (gate_id = $2 OR gate_id = '' OR gate_id NOT IN (SELECT id FROM gates WHERE heartbeat >= $3))
		AND (kind = 'connection' OR last_used < $4)`, id, gateID, alive.UnixNano(), idleBefore.UnixNano())
	if err != nil {
		return false, fmt.Errorf("claim removal of container %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

func (s *Store) RemoveContainer(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM containers WHERE id = $1`, id); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

// ---- batched live-session byte counts ----

// UpdateLiveSessions is one UPDATE over arrays, whatever the number of
// sessions.
func (s *Store) UpdateLiveSessions(ctx context.Context, counts []gate.LiveCount) error {
	if len(counts) == 0 {
		return nil
	}
	ids := make([]string, len(counts))
	ins := make([]int64, len(counts))
	outs := make([]int64, len(counts))
	for i, c := range counts {
		ids[i], ins[i], outs[i] = c.ID, c.BytesIn, c.BytesOut
	}
	if _, err := s.pool.Exec(ctx, `UPDATE live_sessions AS l SET bytes_in = v.i, bytes_out = v.o, updated_at = $4
		FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(id, i, o) WHERE l.id = v.id`,
		ids, ins, outs, time.Now().UnixNano()); err != nil {
		return fmt.Errorf("update live sessions: %w", err)
	}
	return nil
}
