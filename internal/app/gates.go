package app

import (
	"log/slog"
	"net"
	"runtime/debug"

	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/live"
)

// startGateRegistry registers this gate in the store's gates table (for
// `sshgate gates`) under the live registry's gate id, and keeps its
// heartbeat and session count current; the returned stop removes the row.
func startGateRegistry(cfg config.Config, st live.GateStore, reg *live.Registry, addr net.Addr, log *slog.Logger) func() {
	a := addr.String()
	if cfg.Advertise != "" {
		a = cfg.Advertise
	}
	h := live.StartHeartbeat(st, gate.GateInfo{ID: reg.GateID(), Address: a, Version: buildVersion()}, cfg.Store.Heartbeat.D(), reg.Count, log)
	return h.Stop
}

// buildVersion is the main module's version, "dev" for a source build.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
