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

// ---- live sessions ----

func (s *Store) AddLiveSession(ctx context.Context, l gate.LiveSession) error {
	if l.ID == "" || l.GateID == "" {
		return errors.New("add live session: empty id or gate id")
	}
	now := toDB(l.Updated)
	_, err := s.db.ExecContext(ctx, `INSERT INTO live_sessions(id, gate_id, user, target, login, key_fp, started_at, bytes_in, bytes_out, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, l.ID, l.GateID, l.User, l.Target, l.Login, l.KeyFP, toDB(l.Started), l.BytesIn, l.BytesOut, now)
	if isUniqueViolation(err) {
		return fmt.Errorf("live session %q: %w", l.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("add live session %q: %w", l.ID, err)
	}
	return nil
}

func (s *Store) UpdateLiveSession(ctx context.Context, id string, in, out int64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE live_sessions SET bytes_in = ?, bytes_out = ?, updated_at = ? WHERE id = ?`,
		in, out, time.Now().UnixNano(), id)
	if err := affected(res, err, fmt.Errorf("live session %q: %w", id, store.ErrNotFound)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("update live session %q: %w", id, err)
	}
	return nil
}

func (s *Store) RemoveLiveSession(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM live_sessions WHERE id = ?`, id)
	if err := affected(res, err, fmt.Errorf("live session %q: %w", id, store.ErrNotFound)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("remove live session %q: %w", id, err)
	}
	return nil
}

func (s *Store) RemoveLiveSessions(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		const chunk = 500 // under SQLite's limit on placeholders
		for i := 0; i < len(ids); i += chunk {
			part := ids[i:min(i+chunk, len(ids))]
			args := make([]any, len(part))
			for j, id := range part {
				args[j] = id
			}
			q := `DELETE FROM live_sessions WHERE id IN (` + strings.TrimSuffix(strings.Repeat("?,", len(part)), ",") + `)`
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("remove live sessions: %w", err)
			}
		}
		return nil
	})
}

func (s *Store) ListLiveSessions(ctx context.Context) ([]gate.LiveSession, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, gate_id, user, target, login, key_fp, started_at, bytes_in, bytes_out, updated_at, kill_requested
		FROM live_sessions ORDER BY started_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list live sessions: %w", err)
	}
	defer rows.Close()
	out := []gate.LiveSession{}
	for rows.Next() {
		var l gate.LiveSession
		var started, updated int64
		if err := rows.Scan(&l.ID, &l.GateID, &l.User, &l.Target, &l.Login, &l.KeyFP, &started, &l.BytesIn, &l.BytesOut, &updated, &l.KillRequested); err != nil {
			return nil, fmt.Errorf("list live sessions: %w", err)
		}
		l.Started, l.Updated = fromDB(started), fromDB(updated)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list live sessions: %w", err)
	}
	return out, nil
}

func (s *Store) RequestKill(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE live_sessions SET kill_requested = 1 WHERE id = ?`, id)
	if err := affected(res, err, fmt.Errorf("session %q: %w", id, store.ErrNotFound)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("request kill of session %q: %w", id, err)
	}
	return nil
}

func (s *Store) KillRequests(ctx context.Context, gateID string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM live_sessions WHERE gate_id = ? AND kill_requested = 1 ORDER BY id`, gateID)
	if err != nil {
		return nil, fmt.Errorf("read kill requests: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read kill requests: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read kill requests: %w", err)
	}
	return ids, nil
}

func (s *Store) ClearLiveSessions(ctx context.Context, gateID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM live_sessions WHERE gate_id = ?`, gateID); err != nil {
		return fmt.Errorf("clear live sessions of gate %q: %w", gateID, err)
	}
	return nil
}
