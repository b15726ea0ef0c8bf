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

// ---- TOTP enrolments and modes ----

func (s *Store) PutTOTP(ctx context.Context, t gate.TOTP) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireUser(ctx, tx, t.User); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO totp(user, secret, active, last_step, pending, created_at) VALUES (?, ?, ?, 0, '', ?)
			ON CONFLICT(user) DO UPDATE SET secret = excluded.secret, active = excluded.active, last_step = 0, pending = '', created_at = excluded.created_at`,
			t.User, t.Secret, t.Active, toDB(t.CreatedAt))
		if err != nil {
			return fmt.Errorf("put totp of %q: %w", t.User, err)
		}
		return nil
	})
}

func (s *Store) SetPendingTOTP(ctx context.Context, user, sealed string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireUser(ctx, tx, user); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO totp(user, secret, active, last_step, pending, created_at) VALUES (?, '', 0, 0, ?, ?)
			ON CONFLICT(user) DO UPDATE SET pending = excluded.pending`, user, sealed, toDB(time.Time{}))
		if err != nil {
			return fmt.Errorf("set pending totp of %q: %w", user, err)
		}
		return nil
	})
}

const totpColumns = `user, secret, active, pending, last_step, created_at`

func scanTOTP(r scanner) (gate.TOTP, error) {
	var t gate.TOTP
	var created int64
	err := r.Scan(&t.User, &t.Secret, &t.Active, &t.Pending, &t.LastStep, &created)
	t.CreatedAt = fromDB(created)
	return t, err
}

func (s *Store) GetTOTP(ctx context.Context, user string) (gate.TOTP, error) {
	t, err := scanTOTP(s.db.QueryRowContext(ctx, `SELECT `+totpColumns+` FROM totp WHERE user = ?`, user))
	if errors.Is(err, sql.ErrNoRows) {
		return gate.TOTP{}, fmt.Errorf("totp of %q: %w", user, store.ErrNotFound)
	}
	if err != nil {
		return gate.TOTP{}, fmt.Errorf("get totp of %q: %w", user, err)
	}
	return t, nil
}

func (s *Store) ListTOTP(ctx context.Context) ([]gate.TOTP, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+totpColumns+` FROM totp ORDER BY user`)
	if err != nil {
		return nil, fmt.Errorf("list totp: %w", err)
	}
	defer rows.Close()
	var out []gate.TOTP
	for rows.Next() {
		t, err := scanTOTP(rows)
		if err != nil {
			return nil, fmt.Errorf("list totp: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list totp: %w", err)
	}
	return out, nil
}

func (s *Store) ActivateTOTP(ctx context.Context, user string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE totp SET active = 1 WHERE user = ?`, user)
	return affected(res, err, fmt.Errorf("totp of %q: %w", user, store.ErrNotFound))
}

func (s *Store) RemoveTOTP(ctx context.Context, user string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM totp WHERE user = ?`, user)
	return affected(res, err, fmt.Errorf("totp of %q: %w", user, store.ErrNotFound))
}

// UseTOTPStep is one conditional UPDATE, so two gates (or two connections)
// presenting the same code race on the database and only one wins.
func (s *Store) UseTOTPStep(ctx context.Context, user string, step int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE totp SET last_step = ? WHERE user = ? AND last_step < ?`, step, user, step)
	if err != nil {
		return false, fmt.Errorf("use totp step of %q: %w", user, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("use totp step of %q: %w", user, err)
	}
	return n == 1, nil
}

func (s *Store) SetTOTPMode(ctx context.Context, env, target, mode string) error {
	if (env == "") == (target == "") {
		return errors.New("set totp mode: exactly one of env and target")
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		col, name := "env", env
		if env != "" {
			if err := requireEnv(ctx, tx, env); err != nil {
				return err
			}
		} else {
			col, name = "target", target
			if err := requireTarget(ctx, tx, target); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM totp_modes WHERE `+col+` = ?`, name); err != nil {
			return fmt.Errorf("set totp mode of %s %q: %w", col, name, err)
		}
		if mode == "" {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO totp_modes(env, target, mode) VALUES (?, ?, ?)`,
			nullable(env), nullable(target), mode); err != nil {
			return fmt.Errorf("set totp mode of %s %q: %w", col, name, err)
		}
		return nil
	})
}

func (s *Store) GetTOTPMode(ctx context.Context, env, target string) (string, error) {
	if (env == "") == (target == "") {
		return "", errors.New("get totp mode: exactly one of env and target")
	}
	col, name := "env", env
	if target != "" {
		col, name = "target", target
	}
	var mode string
	err := s.db.QueryRowContext(ctx, `SELECT mode FROM totp_modes WHERE `+col+` = ?`, name).Scan(&mode)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get totp mode of %s %q: %w", col, name, err)
	}
	return mode, nil
}

// ---- bans ----

func (s *Store) PutBan(ctx context.Context, b gate.Ban) error {
	if b.Source == "" {
		return errors.New("put ban: empty source")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO bans(source, until, reason, count, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(source) DO UPDATE SET until = excluded.until, reason = excluded.reason, count = excluded.count, created_at = excluded.created_at`,
		b.Source, toDB(b.Until), b.Reason, b.Count, toDB(b.CreatedAt))
	if err != nil {
		return fmt.Errorf("put ban of %s: %w", b.Source, err)
	}
	return nil
}

func scanBan(r scanner) (gate.Ban, error) {
	var b gate.Ban
	var until, created int64
	err := r.Scan(&b.Source, &until, &b.Reason, &b.Count, &created)
	b.Until, b.CreatedAt = fromDB(until), fromDB(created)
	return b, err
}

func (s *Store) GetBan(ctx context.Context, source string) (gate.Ban, error) {
	b, err := scanBan(s.db.QueryRowContext(ctx, `SELECT source, until, reason, count, created_at FROM bans WHERE source = ?`, source))
	if errors.Is(err, sql.ErrNoRows) {
		return gate.Ban{}, fmt.Errorf("ban of %s: %w", source, store.ErrNotFound)
	}
	if err != nil {
		return gate.Ban{}, fmt.Errorf("get ban of %s: %w", source, err)
	}
	return b, nil
}

func (s *Store) ListBans(ctx context.Context) ([]gate.Ban, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT source, until, reason, count, created_at FROM bans ORDER BY source`)
	if err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	defer rows.Close()
	var out []gate.Ban
	for rows.Next() {
		b, err := scanBan(rows)
		if err != nil {
			return nil, fmt.Errorf("list bans: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	return out, nil
}

func (s *Store) RemoveBan(ctx context.Context, source string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM bans WHERE source = ?`, source)
	return affected(res, err, fmt.Errorf("ban of %s: %w", source, store.ErrNotFound))
}

func (s *Store) PruneBans(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM bans WHERE until < ?`, toDB(before))
	if err != nil {
		return 0, fmt.Errorf("prune bans: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune bans: %w", err)
	}
	return int(n), nil
}
