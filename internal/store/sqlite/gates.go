package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// ---- gates sharing the store ----

func (s *Store) RegisterGate(ctx context.Context, g gate.GateInfo) error {
	if g.ID == "" {
		return errors.New("register gate: empty id")
	}
	started := toDB(g.Started)
	beat := started
	if !g.Heartbeat.IsZero() {
		beat = toDB(g.Heartbeat)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO gates(id, address, version, started_at, heartbeat, sessions) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET address = excluded.address, version = excluded.version, started_at = excluded.started_at,
			heartbeat = excluded.heartbeat, sessions = excluded.sessions`,
		g.ID, g.Address, g.Version, started, beat, g.Sessions)
	if err != nil {
		return fmt.Errorf("register gate %q: %w", g.ID, err)
	}
	return nil
}

func (s *Store) GateHeartbeat(ctx context.Context, id string, sessions int, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE gates SET heartbeat = ?, sessions = ? WHERE id = ?`, toDB(at), sessions, id)
	if err := affected(res, err, fmt.Errorf("gate %q: %w", id, store.ErrNotFound)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("heartbeat of gate %q: %w", id, err)
	}
	return nil
}

func (s *Store) ListGates(ctx context.Context) ([]gate.GateInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, address, version, started_at, heartbeat, sessions FROM gates ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list gates: %w", err)
	}
	defer rows.Close()
	out := []gate.GateInfo{}
	for rows.Next() {
		var g gate.GateInfo
		var started, beat int64
		if err := rows.Scan(&g.ID, &g.Address, &g.Version, &started, &beat, &g.Sessions); err != nil {
			return nil, fmt.Errorf("list gates: %w", err)
		}
		g.Started, g.Heartbeat = fromDB(started), fromDB(beat)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list gates: %w", err)
	}
	return out, nil
}

func (s *Store) RemoveGate(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM gates WHERE id = ?`, id)
	if err := affected(res, err, fmt.Errorf("gate %q: %w", id, store.ErrNotFound)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("remove gate %q: %w", id, err)
	}
	return nil
}
