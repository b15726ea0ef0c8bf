// Package store persists users, keys, environments, targets and grants.
// The embedded default is SQLite (modernc.org/sqlite, no cgo); every
// implementation passes the conformance suite in storetest. It imports no
// ssh, policy or target package: it stores what it is given.
package store

import (
	"context"
	"errors"
	"time"
)

var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// User is a gate account. PasswordHash is a PHC string (argon2id) or empty
// when the user has no password.
type User struct {
	Name         string
	PasswordHash string
	CreatedAt    time.Time
}

// Key is one authorized public key of a user.
type Key struct {
	User          string
	Fingerprint   string // "SHA256:..." as ssh-keygen -l prints it
	AuthorizedKey string // one authorized_keys line, without options
	Comment       string
	CreatedAt     time.Time
}

// Env groups targets.
type Env struct {
	Name      string
	CreatedAt time.Time
}

// Target kinds.
const (
	KindUpstream = "upstream" // an existing host or container running sshd or sshgate-agent
	KindDocker   = "docker"   // a container launched on demand
)

// Target is a place users connect to.
type Target struct {
	Name      string
	Env       string
	Kind      string
	Login     string        // default login on the target
	Upstream  *UpstreamSpec `json:",omitempty"`
	Docker    *DockerSpec   `json:",omitempty"`
	CreatedAt time.Time
}

// UpstreamSpec says how to reach an existing SSH server.
type UpstreamSpec struct {
	Addr    string // host:port
	HostKey string // pinned host key, authorized_keys format; empty means "verify through the host CA"
	// Certificates (issue 5): how the gate logs in, "" (a CA certificate
	// when the gate has a CA, else the gate key), "cert" or "key"; and the
	// principal the host certificate must name (default: the host of Addr).
	Auth          string `json:",omitempty"`
	HostPrincipal string `json:",omitempty"`
}

// Upstream login methods (UpstreamSpec.Auth).
const (
	AuthCert = "cert" // a short-lived certificate from the gate's user CA, then the gate key
	AuthKey  = "key"  // the gate key only
)

// DockerSpec says how to launch a container on demand.
type DockerSpec struct {
	Image    string
	User     string   `json:",omitempty"` // user inside the container, e.g. "1000:1000"
	Cmd      []string `json:",omitempty"`
	Env      []string `json:",omitempty"` // KEY=VALUE
	Mounts   []string `json:",omitempty"` // SRC:DST[:ro]
	Memory   int64    `json:",omitempty"` // bytes; 0 = the gate's default (1 GiB), negative = no limit
	NanoCPUs int64    `json:",omitempty"`
	Pids     int64    `json:",omitempty"`
	Network  string   `json:",omitempty"` // "none" (default) or a network name
	Per      string   `json:",omitempty"` // "connection" (default) or "user"
	IdleTTL  string   `json:",omitempty"` // duration, for Per == "user"
	Pool     int      `json:",omitempty"` // warm containers kept ready
}

// Grant lets a user reach one target or every target of an environment.
// Exactly one of Env and Target is set.
type Grant struct {
	ID         int64
	User       string
	Env        string
	Target     string
	Login      string // empty: the target's default login
	Forwarding bool
	CreatedAt  time.Time
}

// Store is the persistence the gate needs. Implementations are safe for
// concurrent use, and several processes (the gate and the CLI) may use the
// same database at once: every read sees the latest committed write.
type Store interface {
	AddUser(ctx context.Context, u User) error
	GetUser(ctx context.Context, name string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	SetPassword(ctx context.Context, name, hash string) error
	RemoveUser(ctx context.Context, name string) error // also removes the user's keys and grants

	AddKey(ctx context.Context, k Key) error
	ListKeys(ctx context.Context, user string) ([]Key, error) // unknown user: empty list, no error
	RemoveKey(ctx context.Context, user, fingerprint string) error

	AddEnv(ctx context.Context, e Env) error
	ListEnvs(ctx context.Context) ([]Env, error)
	RemoveEnv(ctx context.Context, name string) error // refused (ErrExists) while targets use it

	AddTarget(ctx context.Context, t Target) error
	UpdateTarget(ctx context.Context, t Target) error
	GetTarget(ctx context.Context, name string) (Target, error)
	ListTargets(ctx context.Context) ([]Target, error)
	RemoveTarget(ctx context.Context, name string) error // also removes grants naming it

	AddGrant(ctx context.Context, g Grant) (Grant, error)         // assigns ID and CreatedAt
	ListGrants(ctx context.Context, user string) ([]Grant, error) // user "" lists all; unknown user: empty
	RemoveGrant(ctx context.Context, id int64) error

	Ping(ctx context.Context) error
	Close() error

	// TOTP second factor and bans (issue 6 part A: TOTP, brute-force and flood defence).
	PutTOTP(ctx context.Context, t TOTP) error // creates or replaces the user's enrolment (LastStep reset, Pending cleared); user must exist
	// SetPendingTOTP keeps a sealed secret awaiting its first valid code; an
	// active enrolment stays as it is until PutTOTP.
	SetPendingTOTP(ctx context.Context, user, sealed string) error
	GetTOTP(ctx context.Context, user string) (TOTP, error)
	ListTOTP(ctx context.Context) ([]TOTP, error)
	ActivateTOTP(ctx context.Context, user string) error
	RemoveTOTP(ctx context.Context, user string) error
	// UseTOTPStep records step as the user's last accepted code step if it is
	// later than the one recorded: false means the code was already used.
	UseTOTPStep(ctx context.Context, user string, step int64) (bool, error)
	// SetTOTPMode sets (mode "" clears) the TOTP mode of an env or a target:
	// exactly one of env and target is set.
	SetTOTPMode(ctx context.Context, env, target, mode string) error
	GetTOTPMode(ctx context.Context, env, target string) (string, error) // "" when unset
	PutBan(ctx context.Context, b Ban) error                             // creates or replaces the ban of b.Source
	GetBan(ctx context.Context, source string) (Ban, error)
	ListBans(ctx context.Context) ([]Ban, error)                  // expired ones too (they keep the repeat count)
	RemoveBan(ctx context.Context, source string) error           // ErrNotFound when there is none
	PruneBans(ctx context.Context, before time.Time) (int, error) // drops bans that ended before

	// Live sessions (issue 7: `sshgate sessions`): each gate registers the
	// sessions it relays, updates their byte counts now and then, polls
	// for kill requests and removes them when they end.
	AddLiveSession(ctx context.Context, s LiveSession) error
	UpdateLiveSession(ctx context.Context, id string, bytesIn, bytesOut int64) error
	RemoveLiveSession(ctx context.Context, id string) error
	ListLiveSessions(ctx context.Context) ([]LiveSession, error) // oldest first
	RequestKill(ctx context.Context, id string) error            // ErrNotFound if no such live session
	KillRequests(ctx context.Context, gateID string) ([]string, error)
	ClearLiveSessions(ctx context.Context, gateID string) error // a gate's stale rows, at its start

	MenuStore // account menu and username grammar (issue 4)
}

// TOTP is a user's TOTP enrolment. Secret is stored as given (the gate
// seals it before it gets here). It counts only once Active.
type TOTP struct {
	User      string
	Secret    string
	Active    bool
	Pending   string // a sealed secret awaiting its first valid code ("" when none)
	LastStep  int64  // the time step of the last accepted code; 0 when none
	CreatedAt time.Time
}

// TOTP modes of an env or a target.
const (
	TOTPAlways = "always" // a code on every connection
	TOTPNever  = "never"  // no code
	TOTPGrace  = "grace"  // a code, then none for mfa.totp.grace from the same user, key and address
)

// Ban refuses connections from Source (an IPv4 /32 or IPv6 /64 prefix)
// until Until. Count is how many bans the source has earned in a row.
type Ban struct {
	Source    string
	Until     time.Time
	Reason    string
	Count     int
	CreatedAt time.Time
}

// LiveSession is a session a gate is relaying now (issue 7).
type LiveSession struct {
	ID            string // session id (also the recording's name)
	GateID        string
	User          string
	Target        string
	Login         string
	Started       time.Time
	BytesIn       int64 // user -> target
	BytesOut      int64 // target -> user
	Updated       time.Time
	KillRequested bool
}

// ---- account menu and username grammar (issue 4) ----

// TargetInfo is what the menu and the NODEID-UID grammar know of a target
// beyond its spec. ID is assigned by the store when the target is added,
// never reused, and never changes.
type TargetInfo struct {
	Target      string
	ID          int64
	Aliases     []string // sorted
	Primary     bool     // the primary node of its environment
	Description string
}

// UserInfo is a user's numeric uid (assigned when the user is added, never
// reused) and optional default target.
type UserInfo struct {
	User          string
	UID           int64
	DefaultTarget string // "" when none
}

// MenuStore is the part of Store added for the account menu and the
// username grammar (issue 4).
type MenuStore interface {
	ListTargetInfo(ctx context.Context) ([]TargetInfo, error) // every target, ordered by ID
	GetTargetInfo(ctx context.Context, target string) (TargetInfo, error)
	// AddTargetAlias refuses (ErrExists) an alias equal to a target name or
	// to another alias; a target added later with an alias's name is refused too.
	AddTargetAlias(ctx context.Context, target, alias string) error
	RemoveTargetAlias(ctx context.Context, alias string) error
	SetTargetPrimary(ctx context.Context, target string, primary bool) error
	SetTargetDescription(ctx context.Context, target, description string) error

	GetUserInfo(ctx context.Context, user string) (UserInfo, error)
	UserByUID(ctx context.Context, uid int64) (UserInfo, error)
	SetDefaultTarget(ctx context.Context, user, target string) error // target "" clears; removing the target clears it

	EnvGroups(ctx context.Context) (map[string]string, error) // env -> group; envs without a group are absent
	SetEnvGroup(ctx context.Context, env, group string) error // group "" clears
}
