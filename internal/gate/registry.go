package gate

import "time"

// GateInfo is one gate registered in a store that several gates share: it
// registers when it starts, beats while it runs, and removes itself when it
// stops; a gate whose heartbeat is old has died.
type GateInfo struct {
	ID        string
	Address   string // where it listens for SSH
	Version   string
	Started   time.Time
	Heartbeat time.Time
	Sessions  int // live sessions at the last heartbeat
}

// Container kinds in the shared registry of warm containers.
const (
	ContainerPerUser = "user"       // one per (spec key, user), kept for its idle TTL
	ContainerPool    = "pool"       // pre-started, waiting for a connection
	ContainerConn    = "connection" // serves one connection; removed when it ends
)

// WarmContainer is a container in the registry the gates sharing a store
// keep: which gate owns it (Gate, "" when handed over), when it was last
// used and how another gate on the same host reaches its agent (Dir, the
// gate-owned directory bind-mounted into it, and the agent's host key).
type WarmContainer struct {
	ID        string // engine container ID
	Name      string
	Target    string
	Key       string // spec key: equal keys mean interchangeable containers
	User      string // gate user (per-user containers)
	Kind      string // ContainerPerUser, ContainerPool or ContainerConn
	Gate      string // owning gate; "" when free (its gate handed it over)
	Transport string // "socket" or "exec"
	Dir       string // host path of the container's gate-owned directory ("" for exec)
	HostKey   string // the agent's host public key, authorized_keys format
	RunAs     string // the user the agent runs as in the container
	IdleTTL   time.Duration
	LastUsed  time.Time
	Created   time.Time
}

// LiveCount is one live session's byte counts, for a batched update.
type LiveCount struct {
	ID                string
	BytesIn, BytesOut int64
}
