package gate

import "time"

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
	KindUpstream   = "upstream"   // an existing host or container running sshd or sshgate-agent
	KindDocker     = "docker"     // a container launched on demand
	KindKubernetes = "kubernetes" // a pod launched on demand
)

// Target is a place users connect to.
type Target struct {
	Name     string
	Env      string
	Kind     string
	Login    string        // default login on the target
	Upstream *UpstreamSpec `json:",omitempty"`
	Docker   *DockerSpec   `json:",omitempty"`
	// Kubernetes is the pod of a kubernetes target.
	Kubernetes *KubernetesSpec `json:",omitempty"`
	CreatedAt  time.Time
}

// UpstreamSpec says how to reach an existing SSH server.
type UpstreamSpec struct {
	Addr    string // host:port
	HostKey string // pinned host key, authorized_keys format; empty means "verify through the host CA"
	// How the gate logs in, "" (a CA certificate
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
	// RootInside runs the container as root with the engine's default
	// capabilities, only where the engine maps root to an unprivileged
	// user on the host (dockerd --userns-remap); refused elsewhere.
	RootInside bool `json:",omitempty"`
}

// KubernetesSpec says how to launch a pod on demand.
type KubernetesSpec struct {
	Image     string
	Namespace string   `json:",omitempty"` // "" = the gate's kubernetes.namespace
	User      string   `json:",omitempty"` // UID or UID:GID (numeric: a pod's securityContext)
	Cmd       []string `json:",omitempty"`
	Env       []string `json:",omitempty"` // KEY=VALUE
	Memory    int64    `json:",omitempty"` // bytes; 0 = the gate's default, negative = no limit
	NanoCPUs  int64    `json:",omitempty"`
	Per       string   `json:",omitempty"` // "connection" (default) or "user"
	IdleTTL   string   `json:",omitempty"` // duration, for Per == "user"
	Pool      int      `json:",omitempty"` // warm pods kept ready
	// PodTemplate is the operator's pod template (--pod-template) as JSON
	// of a PodTemplateSpec, checked by kube.ParsePodTemplate; "": none.
	PodTemplate string `json:",omitempty"`
	// AllowHost lets the template use privileged containers, hostPath
	// volumes, the node's network/PID/IPC namespaces and added
	// capabilities (--allow-host-access).
	AllowHost bool `json:",omitempty"`
	// RootInside runs the pod as root in its own user namespace
	// (hostUsers: false), with the runtime's default capabilities there.
	RootInside bool `json:",omitempty"`
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
	Controls   Controls // what sessions through this grant may do
	CreatedAt  time.Time
}

// Controls restrict what a grant's sessions may do. The zero value
// restricts nothing (and leaves the time limits to the gate's defaults).
type Controls struct {
	NoShell     bool          `json:",omitempty"` // refuse "shell" requests
	NoExec      bool          `json:",omitempty"` // refuse "exec" requests other than legacy scp and rsync
	NoSFTP      bool          `json:",omitempty"` // refuse the sftp subsystem
	NoSCP       bool          `json:",omitempty"` // refuse "exec scp ..." (legacy scp)
	NoRsync     bool          `json:",omitempty"` // refuse "exec rsync --server ..."
	Command     string        `json:",omitempty"` // forced command: replaces what sessions ask for
	MaxSession  time.Duration `json:",omitempty"` // 0: the gate's default
	IdleTimeout time.Duration `json:",omitempty"` // 0: the gate's default
	// UploadOnly / DownloadOnly restrict file transfers (SFTP, scp, FISH,
	// rsync) to one direction; at most one of them is set.
	UploadOnly   bool `json:",omitempty"`
	DownloadOnly bool `json:",omitempty"`
	// AgentForwarding lets sessions forward the user's SSH agent (ssh -A)
	// to the target.
	AgentForwarding bool `json:",omitempty"`
	// Watch lets the user watch other users' live PTY sessions on the
	// target (`ssh USER@GATE watch ID`), read only.
	Watch bool `json:",omitempty"`
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

// LiveSession is a session a gate is relaying now (`sshgate sessions`).
type LiveSession struct {
	ID            string // session id (also the recording's name)
	GateID        string
	User          string
	Target        string
	Login         string
	KeyFP         string // fingerprint of the key the connection logged in with ("" for none)
	Started       time.Time
	BytesIn       int64 // user -> target
	BytesOut      int64 // target -> user
	Updated       time.Time
	KillRequested bool
}

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
