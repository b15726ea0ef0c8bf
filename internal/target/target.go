// Package target defines how the broker reaches a target: a Backend makes it
// reachable (starting a container if needed) and returns a connection to an
// SSH server plus how to log in to it. Implementations live in subpackages:
// upstream (an existing SSH server), container (the container lifecycle,
// written once) with its engines (docker).
//
// Must not import: sshd/... relay broker store/... auth/... policy app target/container target/docker target/upstream
package target

import (
	"context"
	"net"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
)

// Request is what the broker asks a backend for.
type Request struct {
	Target gate.Target
	Login  string         // the login on the target, already authorized
	ID     *gate.Identity // the gate user
	ConnID string         // the client connection, for labels and logs
	// Forwarding says the grant allows port forwarding (a login certificate
	// then permits it).
	Forwarding bool
	// AgentForwarding says the grant allows agent forwarding (a login
	// certificate then permits it).
	AgentForwarding bool
}

// Upstream is a connection to an SSH server (sshd or sshgate-agent) and the
// client configuration to log in to it. The broker runs the SSH handshake.
type Upstream struct {
	Conn    net.Conn
	Client  *ssh.ClientConfig           // HostKeyCallback is never insecure
	Release func(context.Context) error // idempotent; nil when there is nothing to release
	// Ended, if not nil, says why the target went away when its connection
	// was lost mid-session ("container for web-1 ran out of memory"), as a
	// line fit for the user, or "" when it knows nothing notable.
	Ended func(context.Context) string
}

// Backend makes a target reachable. Errors returned are *gate.PublicError
// where the text is fit for the user ("container for web-1 could not start:
// image "x" not found"); anything else is shown as a generic message.
type Backend interface {
	Open(ctx context.Context, req Request) (*Upstream, error)
}
