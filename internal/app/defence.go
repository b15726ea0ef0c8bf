package app

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/sshgate/sshgate/internal/auth"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/sshd"
	"github.com/sshgate/sshgate/internal/sshd/penalty"
	"github.com/sshgate/sshgate/internal/store"
)

// setupDefence makes the per-source guard for the SSH server (it reads bans
// back from the store until ctx is done), the per-account throttle it also
// is, and the TOTP second factor when it is on (nil otherwise).
func setupDefence(ctx context.Context, cfg config.Config, dir *datadir.Dir, st store.Store, log *slog.Logger) (sshd.Guard, auth.Throttle, *auth.SecondFactor, error) {
	p := cfg.Penalties
	g := penalty.New(penalty.Config{
		Enabled: p.Enabled, AuthFail: p.AuthFail.D(), NoAuth: p.NoAuth.D(), GraceExceeded: p.GraceExceeded.D(),
		Refused: p.Refused.D(), Threshold: p.Threshold.D(), Ban: p.Ban.D(), MaxBan: p.MaxBan.D(),
		Memory: p.Memory.D(), Allow: p.AllowPrefixes(), Refresh: p.Refresh.D(),
		PasswordFailures: p.Account.PasswordFailures, PasswordWindow: p.Account.Window.D(), PasswordLock: p.Account.Lockout.D(),
		CodeFailures: cfg.MFA.TOTP.MaxFailures, CodeWindow: cfg.MFA.TOTP.FailureWindow.D(), CodeLock: cfg.MFA.TOTP.Lockout.D(),
	}, st, log.With("component", "penalty"))
	go g.Run(ctx)
	var second *auth.SecondFactor
	if cfg.MFA.TOTP.Required != "never" {
		key, err := TOTPKey(dir)
		if err != nil {
			return nil, nil, nil, err
		}
		second = auth.NewSecondFactor(st, auth.TOTPConfig{
			Required: cfg.MFA.TOTP.Required, Grace: cfg.MFA.TOTP.Grace.D(), CodeTimeout: cfg.MFA.TOTP.CodeTimeout.D(), Key: key}, g, log)
	}
	return guardAdapter{g}, g, second, nil
}

// guardAdapter maps sshd's outcomes onto penalty's events.
type guardAdapter struct{ g *penalty.Guard }

func (a guardAdapter) Allowed(ip netip.Addr) bool { return a.g.Allowed(ip) }

func (a guardAdapter) Observe(ip netip.Addr, o sshd.Outcome) {
	e := map[sshd.Outcome]penalty.Event{sshd.Authenticated: penalty.AuthOK, sshd.AuthFailed: penalty.AuthFail,
		sshd.NoAuth: penalty.NoAuth, sshd.GraceExceeded: penalty.GraceExceeded, sshd.Refused: penalty.Refused}[o]
	a.g.Observe(ip, e)
}
