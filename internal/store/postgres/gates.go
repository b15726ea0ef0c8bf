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
	_, err := s.pool.Exec(ctx, `INSERT INTO gates(id, address, version, started_at, heartbeat, sessions) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT(id) DO UPDATE SET address = excluded.address, version = excluded.version, started_at = excluded.started_at,
			heartbeat = excluded.heartbeat, sessions = excluded.sessions`,
		g.ID, g.Address, g.Version, started, beat, g.Sessions)
	if err != nil {
		return fmt.Errorf("register gate %q: %w", g.ID, err)
	}
	return nil
}

func (s *Store) GateHeartbeat(ctx context.Context, id string, sessions int, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE gates SET heartbeat = $1, sessions = $2 WHERE id = $3`, toDB(at), sessions, id)
	return orWrap(affected(tag, err, fmt.Errorf("gate %q: %w", id, store.ErrNotFound)), fmt.Sprintf("heartbeat of gate %q", id))
}

func (s *Store) ListGates(ctx context.Context) ([]gate.GateInfo, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, address, version, started_at, heartbeat, sessions FROM gates ORDER BY id`)
	out, err := collect(rows, err, func(r pgx.Rows) (gate.GateInfo, error) {
		var g gate.GateInfo
		var started, beat int64
		err := r.Scan(&g.ID, &g.Address, &g.Version, &started, &beat, &g.Sessions)
		g.Started, g.Heartbeat = fromDB(started), fromDB(beat)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("list gates: %w", err)
	}
	return out, nil
}

func (s *Store) RemoveGate(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM gates WHERE id = $1`, id)
	return orWrap(affected(tag, err, fmt.Errorf("gate %q: %w", id, store.ErrNotFound)), fmt.Sprintf("remove gate %q", id))
}
