// Package store is the persistence interface for the records of package gate
// (users, keys, environments, targets, grants, TOTP, bans, live sessions)
// and its errors.
// The embedded default is SQLite (modernc.org/sqlite, no cgo); every
// implementation passes the conformance suite in storetest. It stores what
// it is given: it knows no SSH, policy or target code.
//
// Must not import: store/sqlite store/storetest broker sshd/... relay target/... auth/... policy app
package store

import (
	"context"
	"errors"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Store is the persistence the gate needs. Implementations are safe for
// concurrent use, and several processes (the gate and the CLI) may use the
// same database at once: every read sees the latest committed write.
type Store interface {
	GateStore      // the gates sharing the store (gates.go)
	AuthStateStore // TOTP grace windows, per-account lockouts (shared.go)
	ContainerStore // the registry of warm containers (shared.go)

	AddUser(ctx context.Context, u gate.User) error
	GetUser(ctx context.Context, name string) (gate.User, error)
	ListUsers(ctx context.Context) ([]gate.User, error)
	SetPassword(ctx context.Context, name, hash string) error
	RemoveUser(ctx context.Context, name string) error // also removes the user's keys and grants

	AddKey(ctx context.Context, k gate.Key) error
	ListKeys(ctx context.Context, user string) ([]gate.Key, error) // unknown user: empty list, no error
	RemoveKey(ctx context.Context, user, fingerprint string) error

	AddEnv(ctx context.Context, e gate.Env) error
	ListEnvs(ctx context.Context) ([]gate.Env, error)
	RemoveEnv(ctx context.Context, name string) error // refused (ErrExists) while targets use it

	AddTarget(ctx context.Context, t gate.Target) error
	UpdateTarget(ctx context.Context, t gate.Target) error
	GetTarget(ctx context.Context, name string) (gate.Target, error)
	ListTargets(ctx context.Context) ([]gate.Target, error)
	RemoveTarget(ctx context.Context, name string) error // also removes grants naming it

	AddGrant(ctx context.Context, g gate.Grant) (gate.Grant, error)    // assigns ID and CreatedAt
	ListGrants(ctx context.Context, user string) ([]gate.Grant, error) // user "" lists all; unknown user: empty
	RemoveGrant(ctx context.Context, id int64) error

	Ping(ctx context.Context) error
	Close() error

	// TOTP second factor and bans.
	PutTOTP(ctx context.Context, t gate.TOTP) error // creates or replaces the user's enrolment (LastStep reset, Pending cleared); user must exist
	// SetPendingTOTP keeps a sealed secret awaiting its first valid code; an
	// active enrolment stays as it is until PutTOTP.
	SetPendingTOTP(ctx context.Context, user, sealed string) error
	GetTOTP(ctx context.Context, user string) (gate.TOTP, error)
	ListTOTP(ctx context.Context) ([]gate.TOTP, error)
	ActivateTOTP(ctx context.Context, user string) error
	RemoveTOTP(ctx context.Context, user string) error
	// UseTOTPStep records step as the user's last accepted code step if it is
	// later than the one recorded: false means the code was already used.
	UseTOTPStep(ctx context.Context, user string, step int64) (bool, error)
	// SetTOTPMode sets (mode "" clears) the TOTP mode of an env or a target:
	// exactly one of env and target is set.
	SetTOTPMode(ctx context.Context, env, target, mode string) error
	GetTOTPMode(ctx context.Context, env, target string) (string, error) // "" when unset
	PutBan(ctx context.Context, b gate.Ban) error                        // creates or replaces the ban of b.Source
	GetBan(ctx context.Context, source string) (gate.Ban, error)
	ListBans(ctx context.Context) ([]gate.Ban, error)             // expired ones too (they keep the repeat count)
	RemoveBan(ctx context.Context, source string) error           // ErrNotFound when there is none
	PruneBans(ctx context.Context, before time.Time) (int, error) // drops bans that ended before

	// Live sessions (for `sshgate sessions`): each gate registers the
	// sessions it relays, updates their byte counts now and then, polls
	// for kill requests and removes them when they end.
	AddLiveSession(ctx context.Context, s gate.LiveSession) error
	UpdateLiveSession(ctx context.Context, id string, bytesIn, bytesOut int64) error
	// UpdateLiveSessions writes many sessions' byte counts in one statement
	// (a gate's batch per interval); unknown ids are skipped.
	UpdateLiveSessions(ctx context.Context, counts []gate.LiveCount) error
	RemoveLiveSession(ctx context.Context, id string) error
	// RemoveLiveSessions removes many sessions in one statement (a gate's
	// sessions ended since its last poll); unknown ids are skipped.
	RemoveLiveSessions(ctx context.Context, ids []string) error
	ListLiveSessions(ctx context.Context) ([]gate.LiveSession, error) // oldest first
	RequestKill(ctx context.Context, id string) error                 // ErrNotFound if no such live session
	KillRequests(ctx context.Context, gateID string) ([]string, error)
	ClearLiveSessions(ctx context.Context, gateID string) error // a gate's stale rows, at its start

	MenuStore // account menu and username grammar
	SSOStore  // single sign-on grants and reuse windows (sso.go)
}

// MenuStore is the part of Store for the account menu and the username
// grammar: target ids, aliases, descriptions, user uids, default targets and
// environment groups.
type MenuStore interface {
	ListTargetInfo(ctx context.Context) ([]gate.TargetInfo, error) // every target, ordered by ID
	GetTargetInfo(ctx context.Context, target string) (gate.TargetInfo, error)
	// AddTargetAlias refuses (ErrExists) an alias equal to a target name or
	// to another alias; a target added later with an alias's name is refused too.
	AddTargetAlias(ctx context.Context, target, alias string) error
	RemoveTargetAlias(ctx context.Context, alias string) error
	SetTargetPrimary(ctx context.Context, target string, primary bool) error
	SetTargetDescription(ctx context.Context, target, description string) error

	GetUserInfo(ctx context.Context, user string) (gate.UserInfo, error)
	UserByUID(ctx context.Context, uid int64) (gate.UserInfo, error)
	SetDefaultTarget(ctx context.Context, user, target string) error // target "" clears; removing the target clears it

	EnvGroups(ctx context.Context) (map[string]string, error) // env -> group; envs without a group are absent
	SetEnvGroup(ctx context.Context, env, group string) error // group "" clears
}
