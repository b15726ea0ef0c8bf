package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// menuMigration adds what the account menu and the username grammar need.
// Ids and uids come from AUTOINCREMENT keys, so they are never reused; rows
// are created by triggers when a target or user is added, so the existing
// Add methods need not know about them.
const menuMigration = `
CREATE TABLE target_info (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	target      TEXT NOT NULL UNIQUE REFERENCES targets(name) ON DELETE CASCADE,
	is_primary  INTEGER NOT NULL DEFAULT 0,
	description TEXT NOT NULL DEFAULT ''
);
INSERT INTO target_info(target) SELECT name FROM targets ORDER BY created_at, name;
CREATE TRIGGER target_info_add AFTER INSERT ON targets
BEGIN
	INSERT INTO target_info(target) VALUES (NEW.name);
END;
CREATE TABLE target_aliases (
	alias  TEXT PRIMARY KEY NOT NULL,
	target TEXT NOT NULL REFERENCES targets(name) ON DELETE CASCADE
);
CREATE INDEX target_aliases_target ON target_aliases(target);
CREATE TRIGGER targets_not_alias BEFORE INSERT ON targets
WHEN EXISTS (SELECT 1 FROM target_aliases WHERE alias = NEW.name)
BEGIN
	SELECT RAISE(ABORT, 'target name is taken by an alias');
END;
CREATE TABLE user_info (
	uid            INTEGER PRIMARY KEY AUTOINCREMENT,
	user           TEXT NOT NULL UNIQUE REFERENCES users(name) ON DELETE CASCADE,
	default_target TEXT REFERENCES targets(name) ON DELETE SET NULL
);
INSERT INTO user_info(user) SELECT name FROM users ORDER BY created_at, name;
CREATE TRIGGER user_info_add AFTER INSERT ON users
BEGIN
	INSERT INTO user_info(user) VALUES (NEW.name);
END;
CREATE TABLE env_groups (
	env TEXT PRIMARY KEY NOT NULL REFERENCES envs(name) ON DELETE CASCADE,
	grp TEXT NOT NULL
);
`

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
		q += ` WHERE i.target = ?`
		args = append(args, name)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY i.id, a.alias`, args...)
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
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireTarget(ctx, tx, target); err != nil {
			return err
		}
		taken, err := exists(ctx, tx, `SELECT 1 FROM targets WHERE name = ?`, alias)
		if err != nil {
			return fmt.Errorf("add alias %q: %w", alias, err)
		}
		if taken {
			return fmt.Errorf("alias %q is a target name: %w", alias, store.ErrExists)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO target_aliases(alias, target) VALUES (?, ?)`, alias, target)
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
	res, err := s.db.ExecContext(ctx, `DELETE FROM target_aliases WHERE alias = ?`, alias)
	if err := affected(res, err, fmt.Errorf("alias %q: %w", alias, store.ErrNotFound)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("remove alias %q: %w", alias, err)
	}
	return nil
}

func (s *Store) setTargetInfo(ctx context.Context, what, target, col string, v any) error {
	res, err := s.db.ExecContext(ctx, `UPDATE target_info SET `+col+` = ? WHERE target = ?`, v, target)
	if err := affected(res, err, fmt.Errorf("target %q: %w", target, store.ErrNotFound)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("set %s of target %q: %w", what, target, err)
	}
	return nil
}

func (s *Store) SetTargetPrimary(ctx context.Context, target string, primary bool) error {
	return s.setTargetInfo(ctx, "primary", target, "is_primary", primary)
}

func (s *Store) SetTargetDescription(ctx context.Context, target, description string) error {
	return s.setTargetInfo(ctx, "description", target, "description", description)
}

func (s *Store) userInfo(ctx context.Context, where string, arg any) (gate.UserInfo, error) {
	var ui gate.UserInfo
	var def sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT uid, user, default_target FROM user_info WHERE `+where+` = ?`, arg).
		Scan(&ui.UID, &ui.User, &def)
	if errors.Is(err, sql.ErrNoRows) {
		return gate.UserInfo{}, fmt.Errorf("user %v: %w", arg, store.ErrNotFound)
	}
	if err != nil {
		return gate.UserInfo{}, fmt.Errorf("get user info %v: %w", arg, err)
	}
	ui.DefaultTarget = def.String
	return ui, nil
}

func (s *Store) GetUserInfo(ctx context.Context, user string) (gate.UserInfo, error) {
	return s.userInfo(ctx, "user", user)
}

func (s *Store) UserByUID(ctx context.Context, uid int64) (gate.UserInfo, error) {
	return s.userInfo(ctx, "uid", uid)
}

func (s *Store) SetDefaultTarget(ctx context.Context, user, target string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireUser(ctx, tx, user); err != nil {
			return err
		}
		if target != "" {
			if err := requireTarget(ctx, tx, target); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE user_info SET default_target = ? WHERE user = ?`, nullable(target), user); err != nil {
			return fmt.Errorf("set default target of %q: %w", user, err)
		}
		return nil
	})
}

func (s *Store) EnvGroups(ctx context.Context) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT env, grp FROM env_groups`)
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
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := requireEnv(ctx, tx, env); err != nil {
			return err
		}
		var err error
		if group == "" {
			_, err = tx.ExecContext(ctx, `DELETE FROM env_groups WHERE env = ?`, env)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO env_groups(env, grp) VALUES (?, ?) ON CONFLICT(env) DO UPDATE SET grp = excluded.grp`, env, group)
		}
		if err != nil {
			return fmt.Errorf("set group of env %q: %w", env, err)
		}
		return nil
	})
}
