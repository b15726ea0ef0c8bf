package store

import (
	"context"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

// GateStore is the registry of the gates sharing a store: each registers
// when it starts, writes a heartbeat while it runs and removes its row when
// it stops. RegisterGate creates or replaces g.ID's row (a restarted gate);
// a zero Heartbeat is Started.
type GateStore interface {
	RegisterGate(ctx context.Context, g gate.GateInfo) error
	GateHeartbeat(ctx context.Context, id string, sessions int, at time.Time) error // ErrNotFound if not registered
	ListGates(ctx context.Context) ([]gate.GateInfo, error)                         // by id
	RemoveGate(ctx context.Context, id string) error                                // ErrNotFound if not registered
}
