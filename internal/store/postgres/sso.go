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

// ssoMigration: the grants single sign-on manages (a mark beside the
// grant, which goes with it) and the reuse windows of device logins.
const ssoMigration = `
CREATE TABLE sso_grants (
	grant_id BIGINT PRIMARY KEY REFERENCES grants(id) ON DELETE CASCADE
);
CREATE TABLE sso_sessions (
	username    TEXT COLLATE "C" NOT NULL REFERENCES users(name) ON DELETE CASCADE,
	fingerprint TEXT COLLATE "C" NOT NULL,
	source      TEXT COLLATE "C" NOT NULL,
	subject     TEXT NOT NULL DEFAULT '',
	amr         TEXT NOT NULL DEFAULT '',
	expires_at  BIGINT NOT NULL,
	created_at  BIGINT NOT NULL,
	PRIMARY KEY (username, fingerprint, source)
);
`

// ---- single sign-on ----

func sameGrant(a, b gate.Grant) bool {
	return a.Env == b.Env && a.Target == b.Target && a.Login == b.Login && a.Forwarding == b.Forwarding
}

func (s *Store) SyncSSOGrants(ctx context.Context, user string, want []gate.Grant) (added, removed, skipped int, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		added, removed, skipped = 0, 0, 0
		// The user's row locked: two gates syncing one user's grants at
		// once take turns, so neither adds a grant twice.
		ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = $1 FOR UPDATE`, user)
		if err != nil {
			return fmt.Errorf("look up user %q: %w", user, err)
		}
		if !ok {
			return fmt.Errorf("user %q: %w", user, store.ErrNotFound)
		}
		rows, err := tx.Query(ctx, `SELECT g.id, COALESCE(g.env, ''), COALESCE(g.target, ''), g.login, g.forwarding
			FROM grants g JOIN sso_grants m ON m.grant_id = g.id WHERE g.username = $1 ORDER BY g.id`, user)
		if err != nil {
			return fmt.Errorf("list sso grants of %q: %w", user, err)
		}
		have, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (gate.Grant, error) {
			var g gate.Grant
			err := r.Scan(&g.ID, &g.Env, &g.Target, &g.Login, &g.Forwarding)
			return g, err
		})
		if err != nil {
			return fmt.Errorf("list sso grants of %q: %w", user, err)
		}
		kept := make([]bool, len(want))
		for _, h := range have {
			keep := false
			for i, w := range want {
				if !kept[i] && sameGrant(h, w) {
					kept[i], keep = true, true
					break
				}
			}
			if !keep {
				if _, err := tx.Exec(ctx, `DELETE FROM grants WHERE id = $1`, h.ID); err != nil {
					return fmt.Errorf("remove sso grant %d: %w", h.ID, err)
				}
				removed++
			}
		}
		for i, w := range want {
			if kept[i] {
				continue
			}
			if (w.Env == "") == (w.Target == "") {
				return fmt.Errorf("sync sso grants of %q: exactly one of env and target must be set", user)
			}
			var err error
			if w.Env != "" {
				err = requireEnv(ctx, tx, w.Env)
			} else {
				err = requireTarget(ctx, tx, w.Target)
			}
			if errors.Is(err, store.ErrNotFound) {
				skipped++
				continue
			}
			if err != nil {
				return err
			}
			var id int64
			if err := tx.QueryRow(ctx, `INSERT INTO grants(username, env, target, login, forwarding, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
				user, nullable(w.Env), nullable(w.Target), w.Login, w.Forwarding, toDB(time.Now())).Scan(&id); err != nil {
				return fmt.Errorf("add sso grant for %q: %w", user, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO sso_grants(grant_id) VALUES ($1)`, id); err != nil {
				return fmt.Errorf("mark sso grant %d: %w", id, err)
			}
			added++
		}
		return nil
	})
	return added, removed, skipped, err
}

func (s *Store) SSOGrantIDs(ctx context.Context, user string) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT g.id FROM grants g JOIN sso_grants m ON m.grant_id = g.id WHERE g.username = $1 ORDER BY g.id`, user)
	if err != nil {
		return nil, fmt.Errorf("list sso grants of %q: %w", user, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list sso grants of %q: %w", user, err)
	}
	if ids == nil {
		ids = []int64{}
	}
	return ids, nil
}

func (s *Store) PutSSOSession(ctx context.Context, ss gate.SSOSession) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireUser(ctx, tx, ss.User); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO sso_sessions(username, fingerprint, source, subject, amr, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT(username, fingerprint, source) DO UPDATE SET subject = excluded.subject, amr = excluded.amr,
				expires_at = excluded.expires_at, created_at = excluded.created_at`,
			ss.User, ss.Fingerprint, ss.Source, ss.Subject, ss.AMR, toDB(ss.Expires), toDB(ss.CreatedAt))
		if err != nil {
			return fmt.Errorf("put sso session of %q: %w", ss.User, err)
		}
		return nil
	})
}

const ssoColumns = `username, fingerprint, source, subject, amr, expires_at, created_at`

func scanSSO(r pgx.Row) (gate.SSOSession, error) {
	var ss gate.SSOSession
	var exp, created int64
	err := r.Scan(&ss.User, &ss.Fingerprint, &ss.Source, &ss.Subject, &ss.AMR, &exp, &created)
	ss.Expires, ss.CreatedAt = fromDB(exp), fromDB(created)
	return ss, err
}

func (s *Store) GetSSOSession(ctx context.Context, user, fingerprint, source string) (gate.SSOSession, error) {
	ss, err := scanSSO(s.pool.QueryRow(ctx, `SELECT `+ssoColumns+` FROM sso_sessions WHERE username = $1 AND fingerprint = $2 AND source = $3`,
		user, fingerprint, source))
	if errors.Is(err, pgx.ErrNoRows) {
		return gate.SSOSession{}, fmt.Errorf("sso session of %q: %w", user, store.ErrNotFound)
	}
	if err != nil {
		return gate.SSOSession{}, fmt.Errorf("get sso session of %q: %w", user, err)
	}
	return ss, nil
}

func (s *Store) ListSSOSessions(ctx context.Context, user string) ([]gate.SSOSession, error) {
	q, args := `SELECT `+ssoColumns+` FROM sso_sessions`, []any{}
	if user != "" {
		q += ` WHERE username = $1`
		args = append(args, user)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY username, created_at, fingerprint, source`, args...)
	if err != nil {
		return nil, fmt.Errorf("list sso sessions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (gate.SSOSession, error) { return scanSSO(r) })
	if err != nil {
		return nil, fmt.Errorf("list sso sessions: %w", err)
	}
	if out == nil {
		out = []gate.SSOSession{}
	}
	return out, nil
}

func (s *Store) RevokeSSOSessions(ctx context.Context, user string) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM sso_sessions WHERE username = $1`, user)
	if err != nil {
		return 0, fmt.Errorf("revoke sso sessions of %q: %w", user, err)
	}
	return int(tag.RowsAffected()), nil
}

func (s *Store) PruneSSOSessions(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM sso_sessions WHERE expires_at < $1`, toDB(before))
	if err != nil {
		return 0, fmt.Errorf("prune sso sessions: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
