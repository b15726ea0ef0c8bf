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
