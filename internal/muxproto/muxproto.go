// Package muxproto is what the gate and sshgate-agent --mux agree on for the
// long-lived exec stream of a keeper pod: the agent's first line, then a
// yamux session (the gate is the client and opens one stream per SSH
// connection; the agent never opens one), and the session's settings.
//
// Must not import: store/... target/... obs broker app auth/... sshd/... relay policy
package muxproto

import (
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// Preamble is written by the agent on stdout before the session: the gate
// reads exactly it, so that a stream into an agent without --mux (an older
// agent image: exit 2 and a usage line on stderr) or into anything else
// fails at once instead of as a yamux error.
const Preamble = "sshgate-agent mux 1\n"

// MaxStreams bounds the streams open at once over one session, on both
// sides (the gate falls back to an exec per connection beyond it; the
// agent's accept backlog is the same).
const MaxStreams = 64

// Window is each stream's largest receive window: flow control is per
// stream, so a connection whose reader is slow holds back only its own
// stream. It is above the 2 MiB channel window of the SSH connection the
// stream carries, so that yamux never binds first: over an exec stream
// whose round trip is tens of milliseconds (the API server, the kubelet,
// the runtime), the window per round trip is the throughput (1 MiB gave
// 15 MB/s where an exec of its own gave 19, in one bench run). What a
// stream buffers is bounded by the SSH windows above it, not by this.
const Window = 4 << 20

// Config is the yamux configuration of both ends. Keepalives find a stream
// that stopped moving (a node gone without a reset) within about a minute.
func Config() *yamux.Config {
	return &yamux.Config{
		AcceptBacklog:          MaxStreams,
		EnableKeepAlive:        true,
		KeepAliveInterval:      20 * time.Second,
		ConnectionWriteTimeout: 30 * time.Second,
		MaxStreamWindowSize:    Window,
		StreamOpenTimeout:      30 * time.Second,
		StreamCloseTimeout:     30 * time.Second,
		LogOutput:              io.Discard,
	}
}

// Client reads the agent's preamble from c and starts the gate's end of the
// session over it (what c carries is the pod's: the container's user can
// put anything there, so nothing but the exact preamble passes). The caller
// bounds the read (a deadline on c) and closes c on error.
func Client(c io.ReadWriteCloser) (*yamux.Session, error) {
	var pre [len(Preamble)]byte
	if _, err := io.ReadFull(c, pre[:]); err != nil {
		return nil, fmt.Errorf("read the mux preamble: %w", err)
	}
	if string(pre[:]) != Preamble {
		return nil, fmt.Errorf("the agent answered %q, not the mux preamble", pre[:])
	}
	return yamux.Client(c, Config())
}
