package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

func (s *Store) ListTargetInfo(ctx context.Context) ([]gate.TargetInfo, error) {
	out, err := s.targetInfo(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list target info: %w", err)
	}
	return out, nil
}

func (s *Store) GetTargetInfo(ctx context.Context, target string) (gate.TargetInfo, error) {
	out, err := s.targetInfo(ctx, target)
	if err != nil {
		return gate.TargetInfo{}, fmt.Errorf("get target info %q: %w", target, err)
	}
	if len(out) == 0 {
		return gate.TargetInfo{}, fmt.Errorf("target %q: %w", target, store.ErrNotFound)
	}
	return out[0], nil
}

// targetInfo reads one target's info (name != "") or every target's.
func (s *Store) targetInfo(ctx context.Context, name string) ([]gate.TargetInfo, error) {
	q := `SELECT i.id, i.target, i.is_primary, i.description, COALESCE(a.alias, '')
		FROM target_info i LEFT JOIN target_aliases a ON a.target = i.target`
	args := []any{}
	if name != "" {
		q += ` WHERE i.target = $1`
		args = append(args, name)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY i.id, a.alias`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []gate.TargetInfo{}
	for rows.Next() {
		var ti gate.TargetInfo
		var alias string
		if err := rows.Scan(&ti.ID, &ti.Target, &ti.Primary, &ti.Description, &alias); err != nil {
			return nil, err
		}
		if n := len(out); n > 0 && out[n-1].ID == ti.ID {
			out[n-1].Aliases = append(out[n-1].Aliases, alias)
			continue
		}
		ti.Aliases = []string{}
		if alias != "" {
			ti.Aliases = append(ti.Aliases, alias)
		}
		out = append(out, ti)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		sort.Strings(out[i].Aliases)
	}
	return out, nil
}

func (s *Store) AddTargetAlias(ctx context.Context, target, alias string) error {
	if alias == "" || strings.TrimSpace(alias) != alias {
		return fmt.Errorf("add alias %q: invalid alias", alias)
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireTarget(ctx, tx, target); err != nil {
			return err
		}
		taken, err := exists(ctx, tx, `SELECT 1 FROM targets WHERE name = $1`, alias)
		if err != nil {
			return fmt.Errorf("add alias %q: %w", alias, err)
		}
		if taken {
			return fmt.Errorf("alias %q is a target name: %w", alias, store.ErrExists)
		}
		_, err = tx.Exec(ctx, `INSERT INTO target_aliases(alias, target) VALUES ($1, $2)`, alias, target)
		if isUniqueViolation(err) {
			return fmt.Errorf("alias %q: %w", alias, store.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("add alias %q: %w", alias, err)
		}
		return nil
	})
}

func (s *Store) RemoveTargetAlias(ctx context.Context, alias string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM target_aliases WHERE alias = $1`, alias)
	return orWrap(affected(tag, err, fmt.Errorf("alias %q: %w", alias, store.ErrNotFound)), fmt.Sprintf("remove alias %q", alias))
}

func (s *Store) setTargetInfo(ctx context.Context, what, target, col string, v any) error {
	tag, err := s.pool.Exec(ctx, `UPDATE target_info SET `+col+` = $1 WHERE target = $2`, v, target)
	return orWrap(affected(tag, err, fmt.Errorf("target %q: %w", target, store.ErrNotFound)), fmt.Sprintf("set %s of target %q", what, target))
}

func (s *Store) SetTargetPrimary(ctx context.Context, target string, primary bool) error {
	return s.setTargetInfo(ctx, "primary", target, "is_primary", primary)
}

func (s *Store) SetTargetDescription(ctx context.Context, target, description string) error {
	return s.setTargetInfo(ctx, "description", target, "description", description)
}

func (s *Store) userInfo(ctx context.Context, where string, arg any) (gate.UserInfo, error) {
	var ui gate.UserInfo
	var def *string
	err := s.pool.QueryRow(ctx, `SELECT uid, username, default_target FROM user_info WHERE `+where+` = $1`, arg).
		Scan(&ui.UID, &ui.User, &def)
	if errors.Is(err, pgx.ErrNoRows) {
		return gate.UserInfo{}, fmt.Errorf("user %v: %w", arg, store.ErrNotFound)
	}
	if err != nil {
		return gate.UserInfo{}, fmt.Errorf("get user info %v: %w", arg, err)
	}
	if def != nil {
		ui.DefaultTarget = *def
	}
	return ui, nil
}

func (s *Store) GetUserInfo(ctx context.Context, user string) (gate.UserInfo, error) {
	return s.userInfo(ctx, "username", user)
}

func (s *Store) UserByUID(ctx context.Context, uid int64) (gate.UserInfo, error) {
	return s.userInfo(ctx, "uid", uid)
}

func (s *Store) SetDefaultTarget(ctx context.Context, user, target string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireUser(ctx, tx, user); err != nil {
			return err
		}
		if target != "" {
			if err := requireTarget(ctx, tx, target); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE user_info SET default_target = $1 WHERE username = $2`, nullable(target), user); err != nil {
			return fmt.Errorf("set default target of %q: %w", user, err)
		}
		return nil
	})
}

func (s *Store) EnvGroups(ctx context.Context) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT env, grp FROM env_groups`)
	if err != nil {
		return nil, fmt.Errorf("list env groups: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var e, g string
		if err := rows.Scan(&e, &g); err != nil {
			return nil, fmt.Errorf("list env groups: %w", err)
		}
		out[e] = g
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list env groups: %w", err)
	}
	return out, nil
}

func (s *Store) SetEnvGroup(ctx context.Context, env, group string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireEnv(ctx, tx, env); err != nil {
			return err
		}
		var err error
		if group == "" {
			_, err = tx.Exec(ctx, `DELETE FROM env_groups WHERE env = $1`, env)
		} else {
			_, err = tx.Exec(ctx, `INSERT INTO env_groups(env, grp) VALUES ($1, $2) ON CONFLICT(env) DO UPDATE SET grp = excluded.grp`, env, group)
		}
		if err != nil {
			return fmt.Errorf("set group of env %q: %w", env, err)
		}
		return nil
	})
}
