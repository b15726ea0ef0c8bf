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

// ---- TOTP enrolments ----

func (s *Store) PutTOTP(ctx context.Context, t gate.TOTP) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireUser(ctx, tx, t.User); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO totp(username, secret, active, last_step, pending, created_at) VALUES ($1, $2, $3, 0, '', $4)
			ON CONFLICT(username) DO UPDATE SET secret = excluded.secret, active = excluded.active, last_step = 0, pending = '', created_at = excluded.created_at`,
			t.User, t.Secret, t.Active, toDB(t.CreatedAt))
		if err != nil {
			return fmt.Errorf("put totp of %q: %w", t.User, err)
		}
		return nil
	})
}

func (s *Store) SetPendingTOTP(ctx context.Context, user, sealed string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireUser(ctx, tx, user); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO totp(username, secret, active, last_step, pending, created_at) VALUES ($1, '', FALSE, 0, $2, $3)
			ON CONFLICT(username) DO UPDATE SET pending = excluded.pending`, user, sealed, toDB(time.Time{}))
		if err != nil {
			return fmt.Errorf("set pending totp of %q: %w", user, err)
		}
		return nil
	})
}

const totpColumns = `username, secret, active, pending, last_step, created_at`

func scanTOTP(r pgx.Row) (gate.TOTP, error) {
	var t gate.TOTP
	var created int64
	err := r.Scan(&t.User, &t.Secret, &t.Active, &t.Pending, &t.LastStep, &created)
	t.CreatedAt = fromDB(created)
	return t, err
}

func (s *Store) GetTOTP(ctx context.Context, user string) (gate.TOTP, error) {
	t, err := scanTOTP(s.pool.QueryRow(ctx, `SELECT `+totpColumns+` FROM totp WHERE username = $1`, user))
	if errors.Is(err, pgx.ErrNoRows) {
		return gate.TOTP{}, fmt.Errorf("totp of %q: %w", user, store.ErrNotFound)
	}
	if err != nil {
		return gate.TOTP{}, fmt.Errorf("get totp of %q: %w", user, err)
	}
	return t, nil
}

func (s *Store) ListTOTP(ctx context.Context) ([]gate.TOTP, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+totpColumns+` FROM totp ORDER BY username`)
	out, err := collect(rows, err, func(r pgx.Rows) (gate.TOTP, error) { return scanTOTP(r) })
	if err != nil {
		return nil, fmt.Errorf("list totp: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func (s *Store) ActivateTOTP(ctx context.Context, user string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE totp SET active = TRUE WHERE username = $1`, user)
	return affected(tag, err, fmt.Errorf("totp of %q: %w", user, store.ErrNotFound))
}

func (s *Store) RemoveTOTP(ctx context.Context, user string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM totp WHERE username = $1`, user)
	return affected(tag, err, fmt.Errorf("totp of %q: %w", user, store.ErrNotFound))
}

// UseTOTPStep is one conditional UPDATE, so two gates (or two connections)
// presenting the same code race on the row lock and only one wins.
func (s *Store) UseTOTPStep(ctx context.Context, user string, step int64) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE totp SET last_step = $1 WHERE username = $2 AND last_step < $1`, step, user)
	if err != nil {
		return false, fmt.Errorf("use totp step of %q: %w", user, err)
	}
	return tag.RowsAffected() == 1, nil
}

func (s *Store) SetTOTPMode(ctx context.Context, env, target, mode string) error {
	if (env == "") == (target == "") {
		return errors.New("set totp mode: exactly one of env and target")
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
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
		if _, err := tx.Exec(ctx, `DELETE FROM totp_modes WHERE `+col+` = $1`, name); err != nil {
			return fmt.Errorf("set totp mode of %s %q: %w", col, name, err)
		}
		if mode == "" {
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO totp_modes(env, target, mode) VALUES ($1, $2, $3)`,
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
	err := s.pool.QueryRow(ctx, `SELECT mode FROM totp_modes WHERE `+col+` = $1`, name).Scan(&mode)
	if errors.Is(err, pgx.ErrNoRows) {
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
	_, err := s.pool.Exec(ctx, `INSERT INTO bans(source, until, reason, count, created_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT(source) DO UPDATE SET until = excluded.until, reason = excluded.reason, count = excluded.count, created_at = excluded.created_at`,
		b.Source, toDB(b.Until), b.Reason, b.Count, toDB(b.CreatedAt))
	if err != nil {
		return fmt.Errorf("put ban of %s: %w", b.Source, err)
	}
	return nil
}

func scanBan(r pgx.Row) (gate.Ban, error) {
	var b gate.Ban
	var until, created int64
	err := r.Scan(&b.Source, &until, &b.Reason, &b.Count, &created)
	b.Until, b.CreatedAt = fromDB(until), fromDB(created)
	return b, err
}

func (s *Store) GetBan(ctx context.Context, source string) (gate.Ban, error) {
	b, err := scanBan(s.pool.QueryRow(ctx, `SELECT source, until, reason, count, created_at FROM bans WHERE source = $1`, source))
	if errors.Is(err, pgx.ErrNoRows) {
		return gate.Ban{}, fmt.Errorf("ban of %s: %w", source, store.ErrNotFound)
	}
	if err != nil {
		return gate.Ban{}, fmt.Errorf("get ban of %s: %w", source, err)
	}
	return b, nil
}

func (s *Store) ListBans(ctx context.Context) ([]gate.Ban, error) {
	rows, err := s.pool.Query(ctx, `SELECT source, until, reason, count, created_at FROM bans ORDER BY source`)
	out, err := collect(rows, err, func(r pgx.Rows) (gate.Ban, error) { return scanBan(r) })
	if err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func (s *Store) RemoveBan(ctx context.Context, source string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM bans WHERE source = $1`, source)
	return affected(tag, err, fmt.Errorf("ban of %s: %w", source, store.ErrNotFound))
}

func (s *Store) PruneBans(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM bans WHERE until < $1`, toDB(before))
	if err != nil {
		return 0, fmt.Errorf("prune bans: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
