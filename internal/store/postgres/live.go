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

// ---- live sessions ----

func (s *Store) AddLiveSession(ctx context.Context, l gate.LiveSession) error {
	if l.ID == "" || l.GateID == "" {
		return errors.New("add live session: empty id or gate id")
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO live_sessions(id, gate_id, username, target, login, key_fp, started_at, bytes_in, bytes_out, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, l.ID, l.GateID, l.User, l.Target, l.Login, l.KeyFP, toDB(l.Started), l.BytesIn, l.BytesOut, toDB(l.Updated))
	if isUniqueViolation(err) {
		return fmt.Errorf("live session %q: %w", l.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("add live session %q: %w", l.ID, err)
	}
	return nil
}

func (s *Store) UpdateLiveSession(ctx context.Context, id string, in, out int64) error {
	tag, err := s.pool.Exec(ctx, `UPDATE live_sessions SET bytes_in = $1, bytes_out = $2, updated_at = $3 WHERE id = $4`,
		in, out, time.Now().UnixNano(), id)
	return orWrap(affected(tag, err, fmt.Errorf("live session %q: %w", id, store.ErrNotFound)), fmt.Sprintf("update live session %q", id))
}

func (s *Store) RemoveLiveSession(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM live_sessions WHERE id = $1`, id)
	return orWrap(affected(tag, err, fmt.Errorf("live session %q: %w", id, store.ErrNotFound)), fmt.Sprintf("remove live session %q", id))
}

func (s *Store) RemoveLiveSessions(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM live_sessions WHERE id = ANY($1)`, ids)
	return orWrap(err, "remove live sessions")
}

func (s *Store) ListLiveSessions(ctx context.Context) ([]gate.LiveSession, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, gate_id, username, target, login, key_fp, started_at, bytes_in, bytes_out, updated_at, kill_requested
		FROM live_sessions ORDER BY started_at, id`)
	out, err := collect(rows, err, func(r pgx.Rows) (gate.LiveSession, error) {
		var l gate.LiveSession
		var started, updated int64
		err := r.Scan(&l.ID, &l.GateID, &l.User, &l.Target, &l.Login, &l.KeyFP, &started, &l.BytesIn, &l.BytesOut, &updated, &l.KillRequested)
		l.Started, l.Updated = fromDB(started), fromDB(updated)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("list live sessions: %w", err)
	}
	return out, nil
}

func (s *Store) RequestKill(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE live_sessions SET kill_requested = TRUE WHERE id = $1`, id)
	return orWrap(affected(tag, err, fmt.Errorf("session %q: %w", id, store.ErrNotFound)), fmt.Sprintf("request kill of session %q", id))
}

func (s *Store) KillRequests(ctx context.Context, gateID string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM live_sessions WHERE gate_id = $1 AND kill_requested ORDER BY id`, gateID)
	ids, err := collect(rows, err, func(r pgx.Rows) (string, error) {
		var id string
		return id, r.Scan(&id)
	})
	if err != nil {
		return nil, fmt.Errorf("read kill requests: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return ids, nil
}

func (s *Store) ClearLiveSessions(ctx context.Context, gateID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM live_sessions WHERE gate_id = $1`, gateID); err != nil {
		return fmt.Errorf("clear live sessions of gate %q: %w", gateID, err)
	}
	return nil
}
