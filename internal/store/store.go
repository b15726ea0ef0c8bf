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
}

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

	MenuStore // account menu and username grammar (issue 4)
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
