package app

import (
	"log/slog"

	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/watch"
)

// newWatchHub is the hub of watchable PTY sessions, with the config's
// notices and backlog, audited on aud.
func newWatchHub(cfg config.Config, aud *audit.Logger) *watch.Hub {
	backlog := int(cfg.Watch.Backlog)
	if backlog == 0 {
		backlog = -1 // none
	}
	o := watch.Options{Backlog: backlog, Notice: cfg.Watch.Notice, NoticeEnd: cfg.Watch.NoticeEnd}
	if aud != nil {
		o.Emit = aud.Emit
	}
	return watch.NewHub(o)
}

// serveWatchSocket serves `sshgate sessions watch` on DATA/watch.sock
// (0600, the gate's own uid and root only). A socket that cannot be made
// (a data directory path too long for a unix socket) is logged: the gate
// runs on without the admin watch. The returned func stops it.
func serveWatchSocket(path string, hub *watch.Hub, log *slog.Logger) func() {
	ln, err := watch.Listen(path)
	if err != nil {
		log.Warn("admin watch socket unavailable: `sshgate sessions watch` will not reach this gate", "path", path, "err", err)
		return func() {}
	}
	srv := watch.Serve(ln, hub, log)
	return srv.Close
}
