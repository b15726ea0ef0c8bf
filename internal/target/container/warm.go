package container

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Warm connections: the agent of a keeper container (pool or per-user,
// socket transport) runs --dial-each on warmSocketFile, a socket the gate
// listens on in the container's gate-owned directory (created by the gate,
// chowned to the container user, mode 0600, like gate.sock). The agent
// keeps one idle connection dialed; the gate takes it for a new SSH
// connection, and the agent dials the next one. A connection costs a dial,
// not a docker exec. The gate stays the SSH client and pins the agent's
// host key as before, so whatever answers on the socket must hold that key.
// The gate never dials into the container, so no path the container's user
// controls is followed on the host.
const warmSocketFile = "warm.sock"

// warmWait bounds how long connect waits for the keeper agent's spare
// connection before it falls back to exec'ing an agent.
const warmWait = 2 * time.Second

type warmSocket struct {
	l     *net.UnixListener
	path  string
	spare chan net.Conn
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

// listenWarm starts the gate's listener for bx's keeper agent.
func (b *Backend) listenWarm(bx *box) (*warmSocket, error) {
	l, err := bx.dir.listen(warmSocketFile)
	if err != nil {
		return nil, err
	}
	w := &warmSocket{l: l, path: filepath.Join(bx.dir.path, warmSocketFile), spare: make(chan net.Conn, 1), done: make(chan struct{})}
	w.wg.Add(1)
	go w.accept()
	return w, nil
}

// accept holds at most one spare connection: the next Accept waits until
// that one is taken or closed.
func (w *warmSocket) accept() {
	defer w.wg.Done()
	for {
		c, err := w.l.Accept()
		if err != nil {
			return
		}
		select {
		case w.spare <- c:
		case <-w.done:
			c.Close()
			return
		}
	}
}

// close ends the listener and any spare (nil-safe, idempotent).
func (w *warmSocket) close() {
	if w == nil {
		return
	}
	w.once.Do(func() {
		close(w.done)
		w.l.Close()
		w.wg.Wait()
		select {
		case c := <-w.spare:
			c.Close()
		default:
		}
		os.Remove(w.path)
	})
}

// takeWarm returns the keeper agent's spare connection, or nil (after one
// log line) when it offers none within warmWait: connect then execs an
// agent as before.
func (b *Backend) takeWarm(ctx context.Context, bx *box) net.Conn {
	w := bx.warm
	if w == nil {
		return nil
	}
	t := time.NewTimer(warmWait)
	defer t.Stop()
	select {
	case c := <-w.spare:
		b.log.Debug("agent connection taken, no exec", "container", bx.name)
		return c
	case <-w.done:
	case <-ctx.Done():
	case <-t.C:
	}
	b.log.Warn("the container's agent offered no connection; starting one by exec", "container", bx.name)
	return nil
}

// trySpare returns the keeper agent's spare connection if one is waiting
// and its agent still holds the other end, else nil, without waiting. A
// live spare means the agent (the container's main process) runs, so the
// caller needs no engine inspect: the warm first byte is then the SSH
// handshake alone. A spare whose agent went away (the container stopped
// or was killed after it dialed) is closed and dropped.
func (w *warmSocket) trySpare() net.Conn {
	if w == nil {
		return nil
	}
	for {
		select {
		case c := <-w.spare:
			if peerOpen(c) {
				return c
			}
			c.Close()
		default:
			return nil
		}
	}
}

// peerOpen reports whether c's peer has neither closed nor shut down its
// writing half: poll(2) with POLLRDHUP, no wait. Data already sent (the
// agent's version line) does not hide a close, as a peek would.
func peerOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, err := unix.Poll(fds, 0)
		open = err == nil && (n == 0 || fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) == 0)
	}); err != nil {
		return false
	}
	return open
}
