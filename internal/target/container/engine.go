package container

import (
	"context"
	"io/fs"
	"net"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

// Engine is what the lifecycle needs from a container engine (Docker, a
// Kubernetes cluster), and no more. The lifecycle decides when containers
// exist, what they are labelled, how the agent gets in and how the gate
// reaches it; the engine only carries those decisions out.
//
// What an engine promises:
//
//   - Prepare checks a target's spec without I/O and translates it into the
//     engine's own settings (kept opaque in Spec.Engine). It refuses what
//     the engine cannot run safely (host mounts, host networks, negative
//     limits) with a *gate.PublicError made by Failed. Equal Spec.Key
//     values mean interchangeable containers: pools and per-user containers
//     are shared only between equal keys.
//   - User says which user the image runs as by default and whether the
//     engine maps uid 0 in the container to an unprivileged uid on the node
//     (Docker userns-remap or rootless, Kubernetes hostUsers: false). The
//     root policy is the lifecycle's.
//   - Create makes a container that is not yet running: PID 1 is
//     req.Entrypoint as req.User, with req.Env and exactly req.Labels (an
//     engine may translate label keys to its own syntax but must give them
//     back unchanged from List), no privilege, every capability dropped, no
//     privilege escalation, the spec's limits. Binds are mounted read-only
//     (a local engine only); Files are at their paths with their modes and
//     owners before PID 1 starts (parent directories 0755, root). The engine
//     names the container. On error, a non-empty Ref.ID names a container
//     that may exist and that the caller removes; a cancelled ctx must not
//     leave a container whose ID is not returned. An engine without a
//     create/start split (a pod) may keep the request and submit it in
//     Start, as long as Remove then also removes what Start submitted.
//   - Start runs PID 1. Remove removes a container whatever its state and
//     treats "already gone" and "already being removed" as success.
//   - List returns every container carrying all the labels given, running
//     or not.
//   - Inspect reports a container's state. A container that does not exist
//     any more, or is being removed, is State.Gone with a nil error. With a
//     non-zero since, State.OOM also counts out-of-memory kills inside the
//     container since then (a session process killed in a container that
//     kept running).
//   - Wait blocks until PID 1 is no longer running and returns its exit code,
//     or returns ctx's error.
//   - Logs returns the last few lines of the container's output (for causes
//     in the log), or "".
//   - Exec runs a command in a running container as a second process:
//     detached (Process.Exited tells when it has ended) or attached, its
//     stdin and stdout then being Process.Conn (the exec transport: one
//     stream per SSH connection, e.g. Docker's hijacked exec or Kubernetes'
//     remotecommand).
//
// A Kubernetes engine maps these onto a pod: Create/Start submit it and wait
// for it to run, Remove deletes it, List selects by labels, Inspect and Wait
// read its phase and the container's last state (OOMKilled), Logs reads
// pods/log, Exec is remotecommand, and Files travel in the pod (an init
// container or a volume) because the socket transport, which needs the
// gate's own directory in the container, is for a local engine only.
//
// Errors from Prepare, User, Create, Start and Exec are *gate.PublicError
// whose text names the target and what went wrong, in the engine's own
// classification ("the container engine is unreachable", "image "x" not
// found", "the user does not exist in the image"); the others are plain
// errors naming the operation. Every method is safe for concurrent use.
type Engine interface {
	Prepare(t gate.Target) (*Spec, error)
	User(ctx context.Context, s *Spec) (UserInfo, error)
	Create(ctx context.Context, req CreateRequest) (Ref, error)
	Start(ctx context.Context, r Ref) error
	Remove(ctx context.Context, r Ref) error
	List(ctx context.Context, labels map[string]string) ([]Listed, error)
	Inspect(ctx context.Context, r Ref, since time.Time) (State, error)
	Wait(ctx context.Context, r Ref) (exitCode int, err error)
	Logs(ctx context.Context, r Ref) string
	Exec(ctx context.Context, r Ref, x ExecRequest) (*Process, error)
}

// Spec is a target's container settings as the lifecycle sees them.
type Spec struct {
	Target  string        // the target's name, for labels and messages
	Key     string        // identifies the settings (see Engine)
	User    string        // the configured user; "" for the image's default
	Cmd     []string      // started beside the agent once it is up
	Env     []string      // KEY=VALUE, checked with CheckEnv
	PerUser bool          // one container per gate user, kept for IdleTTL
	IdleTTL time.Duration // 0: Config.DefaultIdleTTL
	Pool    int           // warm containers kept ready (per connection only)
	// RootInside: the container runs as root, which the engine must map to
	// an unprivileged user on the node (UserInfo.Remapped), else it is
	// refused with UserInfo.NotRemapped.
	RootInside bool
	Engine     any // the engine's translated settings
}

// UserInfo is what the engine knows about the user a container runs as.
type UserInfo struct {
	Default  string // the image's user ("" or "root" included)
	Remapped bool   // uid 0 inside is not uid 0 on the node
	// NotRemapped says why the engine does not remap uid 0 (for the user's
	// line when a RootInside spec is refused), e.g. "the Docker engine
	// runs without userns-remap".
	NotRemapped string
}

// Bind is a host path mounted read-only into a container.
type Bind struct{ Source, Target string }

// File is put into a container before it starts. Exactly one of Data and
// Source is set; Source is a host file to copy.
type File struct {
	Path     string // absolute, in the container
	Mode     fs.FileMode
	UID, GID int
	Data     []byte
	Source   string
}

// CreateRequest is one container to create.
type CreateRequest struct {
	Spec       *Spec
	Suffix     string // unique among this gate's containers: use it in the name
	User       string // the user PID 1 and every exec run as
	Entrypoint []string
	Env        []string
	Labels     map[string]string
	Binds      []Bind
	Files      []File
}

// Ref names a container: its engine ID, the name given to it and the target
// it serves (for messages).
type Ref struct{ ID, Name, Target string }

// Listed is a container found by List.
type Listed struct {
	ID     string
	Names  []string
	Labels map[string]string
}

// State is what Inspect reports.
type State struct {
	Gone        bool // removed, or being removed
	Running     bool
	ExitCode    int
	Error       string // the engine's reason, if any
	OOM         bool   // killed for memory, or an OOM kill inside it since the time asked
	OOMEvents   int    // how many OOM kills the engine recorded since then
	MemoryLimit int64  // bytes; 0 when none
}

// ExecRequest is a second process in a running container.
type ExecRequest struct {
	User   string
	Cmd    []string
	Env    []string
	Attach bool // stdin and stdout become Process.Conn
}

// Process is a started exec. For an attached one Conn carries its stdin
// (writes) and stdout (reads); its stderr goes to the engine's log. For a
// detached one Exited reports whether it has ended and with what code.
type Process struct {
	Conn   net.Conn
	Exited func(ctx context.Context) (done bool, code int, err error)
}
