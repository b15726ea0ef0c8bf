// Package fdpass passes a pipe's read end from the gate to its agent over
// the unix socket that carries their SSH connection (SCM_RIGHTS), so that a
// session's stdin bytes go from the gate straight into the process's stdin
// pipe: no SSH encryption, channel window or agent copy on that leg. The SSH
// session still carries the exec request, signals and the exit status.
//
// Why no token. The descriptor travels as ancillary data on the very
// socket connection whose SSH handshake authenticated the gate (the agent
// pinned nothing: it checks the gate's client key; the gate pins the
// agent's host key). Only the process holding the other end of that
// connection can attach descriptors to it, and that is the gate, which
// accepted it on its own listener. A token sent inside the channel request
// would prove nothing more. What needs binding is which request a
// descriptor belongs to: the gate sends at most one descriptor per
// connection at a time, attached to the write that carries (or precedes)
// the request, and waits for the reply before the next; the agent holds at
// most one unclaimed descriptor (a new one replaces, and closes, one never
// claimed), refuses (closes) any that arrives before the handshake is done
// or with others in one message, one older than Expiry, and one that is not
// a pipe open for reading only.
//
// Must not import: any project package
package fdpass

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// StdinRequest is the channel request (no payload, want-reply) that
// claims the descriptor the gate passed with it: the agent answers true
// once the session's process will read its stdin from that pipe.
const StdinRequest = "stdin-pipe@sshgate"

// Expiry bounds how long an unclaimed descriptor waits on the agent.
const Expiry = 5 * time.Second

// maxFDs is how many descriptors one message may carry: one is expected,
// room for a few more makes a message with extras readable (and refused)
// instead of truncated.
const maxFDs = 4

// Sender is the gate's side: a *net.UnixConn whose next write after Send
// arms it carries a descriptor.
type Sender struct {
	*net.UnixConn
	sendMu sync.Mutex // one descriptor in flight per connection

	mu       sync.Mutex
	oob      []byte // armed rights message, nil when none
	sent     bool
	inFlight sync.WaitGroup // the write carrying oob, until its sendmsg returned
}

// NewSender wraps c.
func NewSender(c *net.UnixConn) *Sender { return &Sender{UnixConn: c} }

// Write writes p; the first write after Send armed a descriptor carries it
// (with p's first byte), and a short send is finished by plain writes.
func (s *Sender) Write(p []byte) (int, error) {
	s.mu.Lock()
	oob := s.oob
	if oob != nil && len(p) > 0 {
		s.oob, s.sent = nil, true
		s.inFlight.Add(1)
	}
	s.mu.Unlock()
	if oob == nil || len(p) == 0 {
		return s.UnixConn.Write(p)
	}
	n, _, err := s.UnixConn.WriteMsgUnix(p, oob, nil)
	s.inFlight.Done() // the kernel holds its own reference to the file now
	n = max(n, 0)     // the syscall's -1 comes back with an error
	if err != nil || n == len(p) {
		return n, err
	}
	m, err := s.UnixConn.Write(p[n:])
	return n + m, err
}

// Send attaches f's descriptor to the next write and runs ask, which must
// write the request that claims it and wait for the answer. It reports
// whether the descriptor left (the peer then holds a copy; the caller may
// close f either way once Send returns).
func (s *Sender) Send(f *os.File, ask func() error) (sent bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var fd int
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return false, err
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	s.oob, s.sent = unix.UnixRights(fd), false
	s.mu.Unlock()
	err = ask()
	s.mu.Lock()
	sent = s.sent
	s.oob, s.sent = nil, false
	s.mu.Unlock()
	// A write that took the descriptor number may still be on its way to
	// sendmsg (ask failed early): f must stay open until it is, or the
	// number could name another file by then.
	s.inFlight.Wait()
	return sent, err
}

// ErrRefused is returned by a Receiver's Read after it refused descriptors:
// the connection is broken off.
var ErrRefused = errors.New("fdpass: descriptor refused")

// Receiver is the agent's side: a *net.UnixConn whose reads take any
// descriptors that come along and hold at most one for Take.
type Receiver struct {
	*net.UnixConn
	oob   []byte // read-side control buffer, reused
	first []byte // read before the Receiver (a dialer's probe byte), replayed

	mu      sync.Mutex
	open    bool // the handshake is done: descriptors may arrive
	held    *os.File
	heldAt  time.Time
	refused error
	closed  bool
}

// NewReceiver wraps c; first are bytes already read from it, read again
// first. Descriptors are refused until Accept.
func NewReceiver(c *net.UnixConn, first []byte) *Receiver {
	return &Receiver{UnixConn: c, first: first, oob: make([]byte, unix.CmsgSpace(maxFDs*4))}
}

// Accept lets descriptors arrive from now on (after the SSH handshake).
func (r *Receiver) Accept() {
	r.mu.Lock()
	r.open = true
	r.mu.Unlock()
}

// Read reads like the connection's Read, taking descriptors that arrive.
func (r *Receiver) Read(b []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(b, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	r.mu.Lock()
	err := r.refused
	r.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, oobn, flags, _, err := r.UnixConn.ReadMsgUnix(b, r.oob)
	// On an error (ECONNRESET: the peer closed with bytes of ours unread)
	// the net package passes recvmsg's -1 through; an io.Reader returns
	// no negative count (bufio, under x/crypto, panics on one).
	n, oobn = max(n, 0), max(oobn, 0)
	if oobn > 0 || flags&unix.MSG_CTRUNC != 0 {
		fds, perr := ParseRights(r.oob[:oobn], flags&unix.MSG_CTRUNC != 0)
		if rerr := r.take(fds, perr); rerr != nil {
			return 0, rerr
		}
	}
	return n, err
}

// take holds the one descriptor fds carries, or closes them all and
// breaks the connection off.
func (r *Receiver) take(fds []int, perr error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	why := perr
	switch {
	case why != nil:
	case r.closed:
		why = errors.New("connection closed")
	case !r.open:
		why = errors.New("before the handshake")
	case len(fds) != 1:
		why = fmt.Errorf("%d descriptors in one message", len(fds))
	}
	if why != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		if r.held != nil {
			r.held.Close()
			r.held = nil
		}
		r.refused = fmt.Errorf("%w: %v", ErrRefused, why)
		return r.refused
	}
	// The gate sends the next descriptor only after the answer to the
	// last one's claim: one still held was never claimed (its channel
	// went away first) and goes.
	if r.held != nil {
		r.held.Close()
	}
	r.held, r.heldAt = os.NewFile(uintptr(fds[0]), "passed-pipe"), time.Now()
	return nil
}

// Take returns the held descriptor, checked: a pipe (S_IFIFO) open for
// reading only, received within Expiry. It is the caller's to close; on an
// error none is held any more (it was closed).
func (r *Receiver) Take() (*os.File, error) {
	r.mu.Lock()
	f, at := r.held, r.heldAt
	r.held = nil
	r.mu.Unlock()
	if f == nil {
		return nil, errors.New("no descriptor was passed")
	}
	if err := CheckReadPipe(f, at, time.Now()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CheckReadPipe says whether f, received at at, may serve as a stdin pipe
// at now.
func CheckReadPipe(f *os.File, at, now time.Time) error {
	if now.Sub(at) > Expiry {
		return fmt.Errorf("descriptor older than %s", Expiry)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("fstat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return fmt.Errorf("not a pipe (mode %#o)", st.Mode&unix.S_IFMT)
	}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("fcntl: %w", err)
	}
	if fl&unix.O_ACCMODE != unix.O_RDONLY {
		return errors.New("pipe not open for reading only")
	}
	if fl&unix.O_NONBLOCK != 0 {
		// The process's stdin must block; the flag is the pipe end's, so
		// clear it rather than hand a process EAGAIN.
		if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
			return fmt.Errorf("clear O_NONBLOCK: %w", err)
		}
	}
	return nil
}

// Close closes the connection and any unclaimed descriptor.
func (r *Receiver) Close() error {
	r.mu.Lock()
	r.closed = true
	if r.held != nil {
		r.held.Close()
		r.held = nil
	}
	r.mu.Unlock()
	return r.UnixConn.Close()
}

// ParseRights parses a control buffer read from a unix socket: it returns
// every SCM_RIGHTS descriptor in it and an error if anything else came
// (other control messages, a malformed or truncated buffer). The
// descriptors are returned even with an error, so that the caller closes
// them. It is its own parser: syscall.ParseUnixRights indexes past the end
// of a rights message shorter than one descriptor (found by
// FuzzParseRights).
func ParseRights(oob []byte, truncated bool) ([]int, error) {
	var fds []int
	var bad error
	if truncated {
		bad = errors.New("control data truncated")
	}
	lenSize := int(unsafe.Sizeof(unix.Cmsghdr{}.Len))
	align := func(n uint64) uint64 { return (n + uint64(lenSize) - 1) &^ uint64(lenSize-1) }
	b := oob
	for len(b) > 0 {
		if len(b) < unix.SizeofCmsghdr {
			return fds, errors.New("control data: short header")
		}
		var l uint64
		if lenSize == 8 {
			l = binary.NativeEndian.Uint64(b)
		} else {
			l = uint64(binary.NativeEndian.Uint32(b))
		}
		if l < unix.SizeofCmsghdr || l > uint64(len(b)) {
			return fds, fmt.Errorf("control data: message length %d of %d bytes", l, len(b))
		}
		level := int32(binary.NativeEndian.Uint32(b[lenSize:]))
		typ := int32(binary.NativeEndian.Uint32(b[lenSize+4:]))
		data := b[unix.SizeofCmsghdr:l]
		switch {
		case level != unix.SOL_SOCKET || typ != unix.SCM_RIGHTS:
			bad = fmt.Errorf("control message level %d type %d", level, typ)
		case len(data)%4 != 0:
			bad = fmt.Errorf("rights of %d bytes", len(data))
		}
		if level == unix.SOL_SOCKET && typ == unix.SCM_RIGHTS {
			for i := 0; i+4 <= len(data); i += 4 {
				fd := int(int32(binary.NativeEndian.Uint32(data[i:])))
				if fd < 0 {
					bad = fmt.Errorf("descriptor %d", fd)
					continue
				}
				fds = append(fds, fd)
			}
		}
		next := align(l)
		if next >= uint64(len(b)) {
			break
		}
		b = b[next:]
	}
	return fds, bad
}
