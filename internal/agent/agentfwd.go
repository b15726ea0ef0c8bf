package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Agent forwarding, the server side of OpenSSH's auth-agent-req@openssh.com:
// a session that asks for it (before its start request, once, and only on a
// connection whose certificate, if any, has permit-agent-forwarding) gets a
// unix socket of its own, in a fresh directory only the agent's user may
// enter (0700, the socket 0600), named by SSH_AUTH_SOCK in the session's
// environment. Each connection accepted on it becomes an
// auth-agent@openssh.com channel to the gate, which relays it to the user's
// agent (or refuses it). When the session ends the socket and its directory
// are removed and the agent connections still open are cut.

const (
	agentRequest = "auth-agent-req@openssh.com"
	agentChannel = "auth-agent@openssh.com"
	// maxAgentConns bounds the agent connections one session has open at once.
	maxAgentConns = 32
)

// agentSocket is one session's forwarded agent.
type agentSocket struct {
	dir   string
	path  string // SSH_AUTH_SOCK
	l     net.Listener
	sconn ssh.Conn
	log   *slog.Logger

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]ssh.Channel // the channel is nil until opened
	wg     sync.WaitGroup
}

// listenAgent makes the session's agent socket and starts accepting on it.
func listenAgent(sconn ssh.Conn, log *slog.Logger) (*agentSocket, error) {
	dir, err := os.MkdirTemp("", "sshgate-agent-")
	if err != nil {
		return nil, fmt.Errorf("agent socket directory: %w", err)
	}
	fail := func(err error) (*agentSocket, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	// MkdirTemp makes it 0700 whatever the umask; say so anyway.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fail(fmt.Errorf("agent socket directory: %w", err))
	}
	path := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		return fail(fmt.Errorf("agent socket: %w", err))
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = l.Close()
		return fail(fmt.Errorf("agent socket: %w", err))
	}
	a := &agentSocket{dir: dir, path: path, l: l, sconn: sconn, log: log, conns: map[net.Conn]ssh.Channel{}}
	a.wg.Add(1)
	go a.accept()
	return a, nil
}

func (a *agentSocket) accept() {
	defer a.wg.Done()
	for {
		conn, err := a.l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				a.log.Info("agent socket accept", "err", err)
			}
			return
		}
		a.mu.Lock()
		if a.closed || len(a.conns) >= maxAgentConns {
			a.mu.Unlock()
			_ = conn.Close()
			continue
		}
		a.conns[conn] = nil
		a.wg.Add(1)
		a.mu.Unlock()
		go a.serve(conn)
	}
}

// serve relays one connection to the socket over an auth-agent@openssh.com
// channel to the gate.
func (a *agentSocket) serve(conn net.Conn) {
	defer a.wg.Done()
	defer func() {
		a.mu.Lock()
		delete(a.conns, conn)
		a.mu.Unlock()
		_ = conn.Close()
	}()
	ch, reqs, err := a.sconn.OpenChannel(agentChannel, nil)
	if err != nil {
		a.log.Info("agent channel refused by the gate", "err", err)
		return
	}
	go ssh.DiscardRequests(reqs)
	a.mu.Lock()
	closed := a.closed
	if !closed {
		a.conns[conn] = ch
	}
	a.mu.Unlock()
	if closed {
		_ = ch.Close()
		return
	}
	// The copy into the channel is its only writer, so it may half-close it.
	in := make(chan struct{})
	go func() {
		defer close(in)
		_, _ = io.Copy(ch, conn)
		_ = ch.CloseWrite()
	}()
	_, _ = io.Copy(conn, ch)
	if uc, ok := conn.(*net.UnixConn); ok {
		_ = uc.CloseWrite()
	}
	<-in
	_ = ch.Close()
}

// close removes the socket and its directory, cuts the agent connections
// still open and waits for their goroutines. Idempotent.
func (a *agentSocket) close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	_ = a.l.Close() // unlinks the socket
	open := make(map[net.Conn]ssh.Channel, len(a.conns))
	for conn, ch := range a.conns {
		open[conn] = ch
	}
	a.mu.Unlock()
	for conn, ch := range open { // Close of a channel writes: not under the lock
		_ = conn.Close()
		if ch != nil {
			_ = ch.Close()
		}
	}
	a.wg.Wait()
	if err := os.RemoveAll(a.dir); err != nil {
		a.log.Info("remove agent socket directory", "err", err)
	}
}
