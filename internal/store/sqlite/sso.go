package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// ssoMigration: the grants single sign-on manages (a mark beside the
// grant, which goes with it) and the reuse windows of device logins.
const ssoMigration = `
CREATE TABLE sso_grants (
	grant_id INTEGER PRIMARY KEY NOT NULL REFERENCES grants(id) ON DELETE CASCADE
);
CREATE TABLE sso_sessions (
	user        TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
	fingerprint TEXT NOT NULL,
	source      TEXT NOT NULL,
	subject     TEXT NOT NULL DEFAULT '',
	amr         TEXT NOT NULL DEFAULT '',
	expires_at  INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (user, fingerprint, source)
);
`

// ---- single sign-on ----

func sameGrant(a, b gate.Grant) bool {
	return a.Env == b.Env && a.Target == b.Target && a.Login == b.Login && a.Forwarding == b.Forwarding
}

func (s *Store) SyncSSOGrants(ctx context.Context, user string, want []gate.Grant) (added, removed, skipped int, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		added, removed, skipped = 0, 0, 0
		if err := requireUser(ctx, tx, user); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT g.id, COALESCE(g.env, ''), COALESCE(g.target, ''), g.login, g.forwarding
			FROM grants g JOIN sso_grants m ON m.grant_id = g.id WHERE g.user = ? ORDER BY g.id`, user)
		if err != nil {
			return fmt.Errorf("list sso grants of %q: %w", user, err)
		}
		var have []gate.Grant
		for rows.Next() {
			var g gate.Grant
			if err := rows.Scan(&g.ID, &g.Env, &g.Target, &g.Login, &g.Forwarding); err != nil {
				rows.Close()
				return fmt.Errorf("list sso grants of %q: %w", user, err)
			}
			have = append(have, g)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
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
				if _, err := tx.ExecContext(ctx, `DELETE FROM grants WHERE id = ?`, h.ID); err != nil {
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
			res, err := tx.ExecContext(ctx, `INSERT INTO grants(user, env, target, login, forwarding, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
				user, nullable(w.Env), nullable(w.Target), w.Login, w.Forwarding, toDB(time.Now()))
			if err != nil {
				return fmt.Errorf("add sso grant for %q: %w", user, err)
			}
			id, err := res.LastInsertId()
			if err != nil {
				return fmt.Errorf("add sso grant for %q: %w", user, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO sso_grants(grant_id) VALUES (?)`, id); err != nil {
				return fmt.Errorf("mark sso grant %d: %w", id, err)
			}
			added++
		}
		return nil
	})
	return added, removed, skipped, err
}

func (s *Store) SSOGrantIDs(ctx context.Context, user string) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT g.id FROM grants g JOIN sso_grants m ON m.grant_id = g.id WHERE g.user = ? ORDER BY g.id`, user)
	if err != nil {
		return nil, fmt.Errorf("list sso grants of %q: %w", user, err)
	}
	defer rows.Close()
	out := []int64{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list sso grants of %q: %w", user, err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (s *Store) PutSSOSession(ctx context.Context, ss gate.SSOSession) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireUser(ctx, tx, ss.User); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO sso_sessions(user, fingerprint, source, subject, amr, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(user, fingerprint, source) DO UPDATE SET subject = excluded.subject, amr = excluded.amr,
				expires_at = excluded.expires_at, created_at = excluded.created_at`,
			ss.User, ss.Fingerprint, ss.Source, ss.Subject, ss.AMR, toDB(ss.Expires), toDB(ss.CreatedAt))
		if err != nil {
			return fmt.Errorf("put sso session of %q: %w", ss.User, err)
		}
		return nil
	})
}

const ssoColumns = `user, fingerprint, source, subject, amr, expires_at, created_at`

func scanSSO(r scanner) (gate.SSOSession, error) {
	var ss gate.SSOSession
	var exp, created int64
	err := r.Scan(&ss.User, &ss.Fingerprint, &ss.Source, &ss.Subject, &ss.AMR, &exp, &created)
	ss.Expires, ss.CreatedAt = fromDB(exp), fromDB(created)
	return ss, err
}

func (s *Store) GetSSOSession(ctx context.Context, user, fingerprint, source string) (gate.SSOSession, error) {
	ss, err := scanSSO(s.db.QueryRowContext(ctx, `SELECT `+ssoColumns+` FROM sso_sessions WHERE user = ? AND fingerprint = ? AND source = ?`,
		user, fingerprint, source))
	if errors.Is(err, sql.ErrNoRows) {
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
		q += ` WHERE user = ?`
		args = append(args, user)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY user, created_at, fingerprint, source`, args...)
	if err != nil {
		return nil, fmt.Errorf("list sso sessions: %w", err)
	}
	defer rows.Close()
	out := []gate.SSOSession{}
	for rows.Next() {
		ss, err := scanSSO(rows)
		if err != nil {
			return nil, fmt.Errorf("list sso sessions: %w", err)
		}
		out = append(out, ss)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sso sessions: %w", err)
	}
	return out, nil
}

func (s *Store) RevokeSSOSessions(ctx context.Context, user string) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sso_sessions WHERE user = ?`, user)
	if err != nil {
		return 0, fmt.Errorf("revoke sso sessions of %q: %w", user, err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (s *Store) PruneSSOSessions(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sso_sessions WHERE expires_at < ?`, toDB(before))
	if err != nil {
		return 0, fmt.Errorf("prune sso sessions: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}
