package app

import (
	"context"
	"log/slog"

	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/store/open"
)

// openStore opens the store cfg.Store names (SQLite in dir by default), as
// the admin commands do.
func openStore(ctx context.Context, cfg config.Config, dir *datadir.Dir, log *slog.Logger) (store.Store, error) {
	return open.Store(ctx, cfg.Store, dir.DBPath(), log)
}
