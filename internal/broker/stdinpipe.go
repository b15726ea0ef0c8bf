package broker

import (
	"os"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/sshgate/sshgate/internal/account"
	"github.com/sshgate/sshgate/internal/fdpass"
)

// pipeSize is the capacity asked for the stdin pipe (F_SETPIPE_SZ; 1 MiB
// is the unprivileged maximum by default). The default 64 KiB costs a
// wake-up of the reader every 64 KiB.
const pipeSize = 1 << 20

// stdinPipe gives a session's stdin a path around the target connection:
// for a shell or exec without a PTY on a target connection that can pass
// descriptors (a container agent over the socket transport), the gate
// makes a pipe, passes its read end to the agent with StdinRequest and
// keeps the write end. It returns the channel the relay writes stdin to:
// upCh itself when the target does not take the pipe (an older agent, a
// failed check), else upCh with Write, CloseWrite and Close on the pipe.
// Everything else (output, requests, the exit status) stays on upCh, and
// the relay's counters and taps see stdin as before: they sit above the
// channel's Write.
func (c *conn) stdinPipe(up *upConn, upCh ssh.Channel, s *account.Setup) ssh.Channel {
	if up.fds == nil || s.PTY != nil || (s.Start.Type != "exec" && s.Start.Type != "shell") {
		return upCh
	}
	r, w, err := os.Pipe()
	if err != nil {
		c.log.Debug("stdin pipe", "err", err)
		return upCh
	}
	// The read end goes to the process as its stdin, which must block: the
	// flag belongs to that end's open file, not to the gate's write end,
	// which stays non-blocking under Go's poller.
	if err := setBlocking(r); err != nil {
		r.Close()
		w.Close()
		return upCh
	}
	_ = withFD(w, func(fd int) { _, _ = unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, pipeSize) })
	var ok bool
	sent, err := up.fds.Send(r, func() error {
		var err error
		ok, err = upCh.SendRequest(fdpass.StdinRequest, true, nil)
		return err
	})
	r.Close() // the agent holds its own copy (or none)
	if err != nil || !ok || !sent {
		w.Close()
		if sent || ok {
			c.log.Info("target refused the stdin pipe; stdin stays on the channel")
		}
		return upCh
	}
	return &pipeChannel{Channel: upCh, w: w}
}

// pipeChannel is a target's session channel whose stdin goes to w.
type pipeChannel struct {
	ssh.Channel
	w    *os.File
	once sync.Once
}

// Write writes all of p to the pipe (the poller finishes short writes and
// waits while the pipe is full; closing w ends the wait).
func (p *pipeChannel) Write(b []byte) (int, error) { return p.w.Write(b) }

// CloseWrite is the user's EOF: the process reads EOF from its stdin.
func (p *pipeChannel) CloseWrite() error {
	p.closePipe()
	return p.Channel.CloseWrite()
}

func (p *pipeChannel) Close() error {
	p.closePipe()
	return p.Channel.Close()
}

func (p *pipeChannel) closePipe() { p.once.Do(func() { p.w.Close() }) }

func setBlocking(f *os.File) error {
	var serr error
	if err := withFD(f, func(fd int) { serr = unix.SetNonblock(fd, false) }); err != nil {
		return err
	}
	return serr
}

func withFD(f *os.File, fn func(fd int)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(u uintptr) { fn(int(u)) })
}
