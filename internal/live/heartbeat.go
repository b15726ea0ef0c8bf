package live

import (
	"context"
	"log/slog"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

// HeartbeatEvery is how often a running gate writes its heartbeat by
// default (store.heartbeat).
const HeartbeatEvery = 10 * time.Second

// HeartbeatExpiry is how old a heartbeat gets before its gate counts as
// dead, by default (store.heartbeat_expiry).
const HeartbeatExpiry = 3 * HeartbeatEvery

// GateStore is the part of the store the heartbeat uses.
type GateStore interface {
	RegisterGate(ctx context.Context, g gate.GateInfo) error
	GateHeartbeat(ctx context.Context, id string, sessions int, at time.Time) error
	RemoveGate(ctx context.Context, id string) error
}

// Heartbeat keeps one gate's row in the store's gates table: registered at
// start, its heartbeat and session count written every interval (one write
// per interval, whatever the number of sessions), removed at Stop. A beat
// that fails (the row was removed by someone else, or the store failed)
// registers the gate again, which creates or replaces its row; what still
// fails is logged and tried again on the next beat.
type Heartbeat struct {
	st    GateStore
	info  gate.GateInfo
	count func() int
	log   *slog.Logger
	stop  chan struct{}
	done  chan struct{}
}

// StartHeartbeat registers info (Started: now if zero) and beats every
// interval with count() as the session count until Stop.
func StartHeartbeat(st GateStore, info gate.GateInfo, every time.Duration, count func() int, log *slog.Logger) *Heartbeat {
	h := newHeartbeat(st, info, count, log)
	h.register()
	t := time.NewTicker(every)
	go func() {
		defer close(h.done)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case now := <-t.C:
				h.beat(now)
			}
		}
	}()
	return h
}

func newHeartbeat(st GateStore, info gate.GateInfo, count func() int, log *slog.Logger) *Heartbeat {
	if info.Started.IsZero() {
		info.Started = time.Now()
	}
	return &Heartbeat{st: st, info: info, count: count, log: log, stop: make(chan struct{}), done: make(chan struct{})}
}

func (h *Heartbeat) register() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g := h.info
	g.Heartbeat, g.Sessions = time.Now(), h.count()
	if err := h.st.RegisterGate(ctx, g); err != nil {
		h.log.Warn("register gate", "gate_id", g.ID, "err", err)
	}
}

func (h *Heartbeat) beat(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.st.GateHeartbeat(ctx, h.info.ID, h.count(), now); err != nil {
		h.log.Debug("gate heartbeat", "gate_id", h.info.ID, "err", err)
		h.register()
	}
}

// Stop ends the beats and removes the gate's row.
func (h *Heartbeat) Stop() {
	close(h.stop)
	<-h.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.st.RemoveGate(ctx, h.info.ID); err != nil {
		h.log.Debug("unregister gate", "gate_id", h.info.ID, "err", err) // not found: someone removed it
	}
}
