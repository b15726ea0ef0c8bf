package container

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/sshgate/sshgate/internal/fdpass"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target"
)

// Open starts (or reuses) a container for req and returns a connection to
// its agent.
func (b *Backend) Open(ctx context.Context, req target.Request) (*target.Upstream, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OpenTimeout)
	defer cancel()
	s, err := b.eng.Prepare(req.Target)
	if err != nil {
		return nil, err
	}
	login := req.Login
	if login == "" {
		login = req.Target.Login
	}
	user := ""
	if req.ID != nil {
		user = req.ID.User
	}
	log := b.log.With("conn_id", req.ConnID, "target", s.Target)
	if s.PerUser {
		return b.openWarm(ctx, s, user, login, req.ConnID, log)
	}
	if s.Pool > 0 {
		bx, spare := b.takePool(ctx, s)
		// Refill after this connection's handshake with its agent: on a
		// small machine a container start competes for the CPU the
		// connection needs now.
		defer b.refillSoon(s)
		if bx != nil {
			log.Debug("container taken from pool", "container", bx.name, "spare", spare != nil)
			if spare != nil {
				return b.upstream(bx, spare, login, log, func(context.Context) error { return b.cleanup(bx) }), nil
			}
			return b.connectOwned(ctx, bx, login, log)
		}
	}
	labels := map[string]string{LabelUser: user, LabelConn: req.ConnID, LabelPer: "connection"}
	keeper := b.cfg.Transport == TransportExec
	b.liveStarts.Add(1)
	bx, err := b.create(ctx, s, keeper, labels, gate.ContainerConn)
	if err != nil {
		b.liveStarts.Add(-1)
		return nil, err
	}
	conn, err := b.start(ctx, bx)
	b.liveStarts.Add(-1)
	if err != nil {
		b.cleanup(bx)
		return nil, err
	}
	if keeper {
		return b.connectOwned(ctx, bx, login, log)
	}
	log.Info("container started", "container", bx.name, "id", short(bx.id), "took", time.Since(bx.started).Round(time.Millisecond))
	return b.upstream(bx, conn, login, log, func(context.Context) error { return b.cleanup(bx) }), nil
}

// connectOwned opens a connection to a running keeper container that then
// belongs to this connection alone (removed on Release).
func (b *Backend) connectOwned(ctx context.Context, bx *box, login string, log *slog.Logger) (*target.Upstream, error) {
	conn, err := b.connect(ctx, bx)
	if err != nil {
		b.cleanup(bx)
		return nil, err
	}
	return b.upstream(bx, conn, login, log, func(context.Context) error { return b.cleanup(bx) }), nil
}

// upstream returns conn with the login for bx; Release runs release once,
// after logging how the container fared. A container that dies (OOM kill,
// removal) takes the agent with it, so the connection ends by itself: the
// broker sees EOF and calls Release, which says why in the log.
func (b *Backend) upstream(bx *box, conn net.Conn, login string, log *slog.Logger, release func(context.Context) error) *target.Upstream {
	since := time.Now()
	var once, endOnce sync.Once
	var rerr error
	var why string
	report := func(ctx context.Context, settle bool) string {
		endOnce.Do(func() { why = b.reportEnd(ctx, bx, since, log, settle) })
		return why
	}
	// Over the socket transport the gate may pass a session's stdin pipe
	// to the agent on this connection (package fdpass).
	if uc, ok := conn.(*net.UnixConn); ok && b.cfg.Transport == TransportSocket {
		conn = fdpass.NewSender(uc)
	}
	return &target.Upstream{
		Conn:   conn,
		Client: b.clientConfig(bx, login),
		Ended:  func(ctx context.Context) string { return report(ctx, true) },
		Release: func(ctx context.Context) error {
			once.Do(func() {
				conn.Close()
				report(ctx, false)
				rerr = release(ctx)
				if rerr != nil {
					log.Error("release container", "container", bx.name, "err", rerr)
				}
			})
			return rerr
		},
	}
}
