package app

import (
	"context"
	"log/slog"

	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/target"
)

// addDocker wires the docker backend when it is available. (Filled in when
// the docker backend lands.)
func addDocker(ctx context.Context, cfg config.Config, dir *datadir.Dir, log *slog.Logger, backends map[string]target.Backend) (func(), error) {
	return func() {}, nil
}
