package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/creack/pty"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/sshgate/sshgate/internal/fdpass"
)

// Request payloads (RFC 4254 section 6).
type ptyReq struct {
	Term             string
	Cols, Rows, W, H uint32
	Modes            string
}

type winChange struct {
	Cols, Rows, W, H uint32
}

type envReq struct{ Name, Value string }
type execReq struct{ Command string }
type subsystemReq struct{ Name string }
type signalReq struct{ Signal string }

type exitStatusMsg struct{ Status uint32 }
type exitSignalMsg struct {
	Signal     string
	CoreDumped bool
	Error      string
	Lang       string
}

// session is one "session" channel.
type session struct {
	c   *connState
	ch  ssh.Channel
	env []string // accepted client env, KEY=VALUE

	mu       sync.Mutex
	started  bool
	pty      *ptyReq
	ptmx     *os.File // PTY master, while the process runs
	pgid     int      // process group (== pid), while it runs
	exited   bool
	pending  []func()     // goroutines to start once the request is answered
	stopInpr func()       // stops an in-process handler (sftp, scp)
	closeOut func()       // closes the output pipes' read ends
	agent    *agentSocket // the forwarded agent's socket, when asked for (agentfwd.go)
	// stdin: the read end of a pipe the gate passed (StdinPipeRequest),
	// whose write end the gate holds; nil for stdin over the channel. The
	// session owns it until a process takes it (or it is closed at the end).
	stdin *os.File
	done  chan struct{}
}

func (c *connState) handleSession(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	s := &session{c: c, ch: ch, done: make(chan struct{})}
	c.srv.track(s, true)
	defer c.srv.track(s, false)
	for req := range reqs {
		ok := s.request(req)
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
		// Only now may output, exit status and close follow: an exec
		// answered after the channel closed reads as EOF to the client.
		s.launch()
	}
	// The channel is closed (by the peer, or by us after the exit status):
	// stop whatever still runs, and wait for the session's goroutines.
	s.mu.Lock()
	started, agent := s.started, s.agent
	if s.stdin != nil { // passed and never used
		s.stdin.Close()
		s.stdin = nil
	}
	s.mu.Unlock()
	ch.Close()
	if started {
		s.kill()
		<-s.done
	}
	if agent != nil {
		agent.close()
	}
}

// request handles one channel request and says whether it succeeded.
func (s *session) request(req *ssh.Request) bool {
	switch req.Type {
	case StdinPipeRequest:
		return s.takeStdinPipe()
	case "pty-req":
		var p ptyReq
		if ssh.Unmarshal(req.Payload, &p) != nil || !permitted(s.c.sconn.Permissions, "permit-pty") {
			return false
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.started || s.pty != nil || s.stdin != nil {
			return false
		}
		s.pty = &p
		return true
	case "window-change":
		var w winChange
		if ssh.Unmarshal(req.Payload, &w) != nil {
			return false
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.pty == nil {
			return false
		}
		s.pty.Cols, s.pty.Rows, s.pty.W, s.pty.H = w.Cols, w.Rows, w.W, w.H
		if s.ptmx != nil {
			_ = setWinsize(s.ptmx, winsize(s.pty))
		}
		return true
	case "env":
		var e envReq
		if ssh.Unmarshal(req.Payload, &e) != nil || !clientEnvAllowed(e.Name) || strings.ContainsRune(e.Value, 0) {
			return false
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.started {
			return false
		}
		s.env = append(s.env, e.Name+"="+e.Value)
		return true
	case "shell":
		return s.start("", false)
	case "exec":
		var e execReq
		if ssh.Unmarshal(req.Payload, &e) != nil {
			return false
		}
		return s.start(e.Command, true)
	case "subsystem":
		var sr subsystemReq
		if ssh.Unmarshal(req.Payload, &sr) != nil || sr.Name != "sftp" || s.hasStdinPipe() {
			return false
		}
		return s.startInProcess(func(stdin io.Reader, stdout, _ io.Writer) int {
			return s.serveSFTP()
		})
	case "signal":
		var sr signalReq
		if ssh.Unmarshal(req.Payload, &sr) != nil {
			return false
		}
		sig, ok := signalByName[sr.Signal]
		if !ok {
			return false
		}
		return s.signalGroup(sig)
	case agentRequest:
		return s.forwardAgent()
	default:
		// x11-req, break, ...: refused.
		return false
	}
}

// StdinPipeRequest is the gate's channel request (no payload) that claims
// the pipe read end it passed on the connection's socket (package
// fdpass): the session's process then reads its stdin from that pipe,
// whose write end the gate holds, instead of from the channel. Only
// before the session starts, once, without a PTY; a connection not over a
// unix socket, or with no (or no valid) descriptor passed, answers false
// and the gate keeps stdin on the channel.
const StdinPipeRequest = fdpass.StdinRequest

func (s *session) takeStdinPipe() bool {
	fr := s.c.fds
	if fr == nil {
		return false
	}
	f, err := fr.Take() // closed by Take when it fails the checks
	if err != nil {
		s.c.log.Warn("stdin pipe refused", "err", err)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.pty != nil || s.stdin != nil {
		f.Close()
		return false
	}
	s.stdin = f
	return true
}

// pollable returns f (nil-safe) as a non-blocking file under Go's poller,
// for a passed pipe the agent reads itself (an in-process handler): closing
// it then ends a read that waits. f's end is the agent's alone (the gate
// kept only the write end), so the flag touches nobody else.
func pollable(f *os.File) *os.File {
	if f == nil {
		return nil
	}
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return f
	}
	f.Close()
	unix.CloseOnExec(fd)
	_ = unix.SetNonblock(fd, true) // if it fails, a blocking file: reads still work
	return os.NewFile(uintptr(fd), "stdin-pipe")
}

func (s *session) hasStdinPipe() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stdin != nil
}

// forwardAgent answers auth-agent-req@openssh.com: once per session,
// before it starts, and only when the connection's certificate (if any)
// permits it.
func (s *session) forwardAgent() bool {
	if !permitted(s.c.sconn.Permissions, "permit-agent-forwarding") {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.agent != nil {
		return false
	}
	a, err := listenAgent(s.c.sconn, s.c.log)
	if err != nil {
		s.c.log.Warn("agent forwarding", "err", err)
		return false
	}
	s.agent = a
	return true
}

// clientEnvAllowed is the AcceptEnv list: TERM, LANG and LC_*.
func clientEnvAllowed(name string) bool {
	if name == "" || strings.ContainsAny(name, "=\x00") {
		return false
	}
	return name == "TERM" || name == "LANG" || strings.HasPrefix(name, "LC_")
}

func winsize(p *ptyReq) *pty.Winsize {
	clamp := func(v uint32) uint16 {
		if v > 0xffff {
			return 0xffff
		}
		return uint16(v)
	}
	return &pty.Winsize{Rows: clamp(p.Rows), Cols: clamp(p.Cols), X: clamp(p.W), Y: clamp(p.H)}
}

// environ builds a session's environment: the agent's own (the container's
// configured environment), the account, the accepted client variables, the
// PTY's TERM, and last the fixed --env values.
func (s *session) environ(ttyName string) []string {
	srv := s.c.srv
	m := map[string]string{}
	var order []string
	set := func(kv string) {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = v
	}
	for _, kv := range os.Environ() {
		set(kv)
	}
	set("HOME=" + srv.user.home)
	set("USER=" + srv.user.name)
	set("LOGNAME=" + srv.user.name)
	set("SHELL=" + srv.shell)
	if _, ok := m["PATH"]; !ok {
		set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	for _, kv := range s.env {
		set(kv)
	}
	if s.agent != nil {
		set("SSH_AUTH_SOCK=" + s.agent.path)
	}
	if s.pty != nil {
		set("TERM=" + s.pty.Term)
		if ttyName != "" {
			set("SSH_TTY=" + ttyName)
		}
	}
	for _, kv := range srv.env {
		set(kv)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+m[k])
	}
	return out
}

// workDir is HOME if it is a directory the agent's user may enter (an
// image's HOME=/root with --user nobody is not), else "/".
func (s *session) workDir() string {
	home := s.c.srv.user.home
	if fi, err := os.Stat(home); err == nil && fi.IsDir() && syscall.Access(home, 1 /* X_OK */) == nil {
		return home
	}
	return "/"
}

// shellCommand builds the command for a shell (command == "" and !isExec)
// or for "shell -c command". A shell whose file name is busybox is run as
// its sh applet.
func (s *session) shellCommand(command string, isExec bool) *exec.Cmd {
	shell := s.c.srv.shell
	base := filepath.Base(shell)
	if base == "busybox" {
		base = "sh"
	}
	cmd := &exec.Cmd{Path: shell}
	if isExec {
		cmd.Args = []string{base, "-c", command}
	} else {
		cmd.Args = []string{"-" + base} // a login shell, as sshd starts it
	}
	return cmd
}

// start runs the shell, or an exec request. An exec of "scp -t/-f" without
// a PTY is served in Go (no scp binary needed).
func (s *session) start(command string, isExec bool) bool {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return false
	}
	hasPty := s.pty != nil
	s.mu.Unlock()
	if isExec && !hasPty {
		if sc, ok := parseSCPCommand(command); ok {
			return s.startInProcess(func(stdin io.Reader, stdout, stderr io.Writer) int {
				return sc.run(stdin, stdout, stderr, s.workDir())
			})
		}
	}
	if hasPty {
		return s.startPTY(command, isExec)
	}
	return s.startPipes(command, isExec)
}

func (s *session) startPipes(command string, isExec bool) bool {
	cmd := s.shellCommand(command, isExec)
	cmd.Dir = s.workDir()
	cmd.Env = s.environ("")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}

	var parent, child []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	s.mu.Lock()
	passed := s.stdin
	s.stdin = nil
	s.mu.Unlock()
	var inR, inW *os.File
	var err error
	if passed != nil {
		// The gate's pipe: the process reads its stdin straight from it,
		// the agent copies nothing (StdinPipeRequest).
		inR = passed
	} else if inR, inW, err = os.Pipe(); err != nil {
		return false
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll([]*os.File{inR, inW})
		return false
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll([]*os.File{inR, inW, outR, outW})
		return false
	}
	parent = []*os.File{outR, errR}
	if inW != nil {
		parent = append(parent, inW)
	}
	child = []*os.File{inR, outW, errW}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		closeAll(parent)
		closeAll(child)
		return false
	}
	wait, err := s.c.srv.procs.start(cmd)
	closeAll(child)
	if err != nil {
		closeAll(parent)
		s.c.log.Info("start session process", "err", err)
		return false
	}
	s.started = true
	s.pgid = cmd.Process.Pid
	s.closeOut = func() { outR.Close(); errR.Close() }

	if inW != nil {
		s.spawn(func() {
			// stdin: the channel to the process; EOF from the client closes the
			// pipe so that the command sees it.
			copyToPipe(inW, s.ch)
			inW.Close()
		})
	}
	var out sync.WaitGroup
	out.Add(2)
	s.spawn(func() { defer out.Done(); _, _ = io.Copy(s.ch, outR) })
	s.spawn(func() { defer out.Done(); _, _ = io.Copy(s.ch.Stderr(), errR) })
	s.spawn(func() {
		defer close(s.done)
		e := wait()
		s.markExited()
		out.Wait() // OpenSSH waits for the output to drain, too
		outR.Close()
		errR.Close()
		s.finish(e)
	})
	return true
}

func (s *session) startPTY(command string, isExec bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return false
	}
	ptmx, tty, err := openPTY()
	if err != nil {
		s.c.log.Info("open pty", "err", err)
		return false
	}
	_ = setWinsize(ptmx, winsize(s.pty))
	applyModes(tty, s.pty.Modes)

	cmd := s.shellCommand(command, isExec)
	cmd.Dir = s.workDir()
	cmd.Env = s.environ(tty.Name())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	wait, err := s.c.srv.procs.start(cmd)
	tty.Close()
	if err != nil {
		ptmx.Close()
		s.c.log.Info("start session process", "err", err)
		return false
	}
	s.started = true
	s.pgid = cmd.Process.Pid
	s.ptmx = ptmx

	s.spawn(func() { _, _ = io.Copy(ptmx, s.ch) })
	outDone := make(chan struct{})
	s.spawn(func() {
		defer close(outDone)
		_, _ = io.Copy(s.ch, ptmx) // ends with EIO once no one holds the tty
	})
	s.spawn(func() {
		defer close(s.done)
		e := wait()
		s.markExited()
		// Whatever the shell wrote is in the master's buffer: drain it, but
		// do not wait for background jobs that keep the tty open.
		select {
		case <-outDone:
		case <-time.After(100 * time.Millisecond):
			_ = ptmx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			<-outDone
		}
		s.mu.Lock()
		s.ptmx = nil
		s.mu.Unlock()
		ptmx.Close()
		s.finish(e)
	})
	return true
}

// openPTY opens a PTY pair whose master is non-blocking and in Go's poller,
// so that reads on it honour deadlines and Close (creack/pty hands out a
// blocking master).
func openPTY() (ptmx, tty *os.File, err error) {
	m, tty, err := pty.Open()
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	fd, err := syscall.Dup(int(m.Fd()))
	if err != nil {
		tty.Close()
		return nil, nil, err
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		tty.Close()
		return nil, nil, err
	}
	return os.NewFile(uintptr(fd), m.Name()), tty, nil
}

// setWinsize sets the terminal size without switching f to blocking mode.
func setWinsize(f *os.File, ws *pty.Winsize) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	err = rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCSWINSZ, uintptr(unsafe.Pointer(ws)))
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// startInProcess runs fn with the channel as stdin/stdout/stderr in a
// goroutine (sftp, scp) and reports its exit status.
func (s *session) startInProcess(fn func(stdin io.Reader, stdout, stderr io.Writer) int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return false
	}
	s.started = true
	var stdin io.Reader = s.ch
	passed := pollable(s.stdin)
	s.stdin = nil
	if passed != nil {
		stdin = passed
	}
	s.stopInpr = func() {
		s.ch.Close()
		if passed != nil {
			passed.Close()
		}
	}
	s.spawn(func() {
		defer close(s.done)
		if passed != nil {
			defer passed.Close()
		}
		code := fn(stdin, s.ch, s.ch.Stderr())
		s.markExited()
		s.finish(exitInfo{code: code})
	})
	return true
}

// spawn queues f to run in its own goroutine once the current request has
// been answered. The caller holds s.mu.
func (s *session) spawn(f func()) { s.pending = append(s.pending, f) }

// launch starts the queued goroutines.
func (s *session) launch() {
	s.mu.Lock()
	fs := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, f := range fs {
		go f()
	}
}

func (s *session) serveSFTP() int {
	srv, err := sftp.NewServer(s.ch, sftp.WithServerWorkingDirectory(s.workDir()))
	if err != nil {
		return 1
	}
	// Not srv.Close: it closes the channel, and the exit status must
	// still go out (finish closes the channel after it).
	err = srv.Serve()
	if err != nil && !errors.Is(err, io.EOF) {
		return 1
	}
	return 0
}

func (s *session) markExited() {
	s.mu.Lock()
	s.exited = true
	s.mu.Unlock()
}

// finish ends the channel as sshd does: EOF, exit-status (or exit-signal),
// close. Then the process group is hung up, as a terminal hang-up would.
func (s *session) finish(e exitInfo) {
	_ = s.ch.CloseWrite()
	if e.signal != 0 {
		_, _ = s.ch.SendRequest("exit-signal", false, ssh.Marshal(&exitSignalMsg{
			Signal: signalName(e.signal), CoreDumped: e.core,
		}))
	} else {
		_, _ = s.ch.SendRequest("exit-status", false, ssh.Marshal(&exitStatusMsg{Status: uint32(e.code)}))
	}
	_ = s.ch.Close()
	s.mu.Lock()
	pgid := s.pgid
	s.pgid = 0
	s.mu.Unlock()
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGHUP)
	}
}

// kill stops what the session runs when its channel went away first: the
// whole process group is killed, an in-process handler is cut off.
func (s *session) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopInpr != nil {
		s.stopInpr()
	}
	if s.pgid > 0 && !s.exited {
		_ = syscall.Kill(-s.pgid, syscall.SIGKILL)
	}
	if s.closeOut != nil {
		// A process that left the group may still hold the pipes.
		s.closeOut()
	}
}

// signalGroup delivers sig to the session's process group.
func (s *session) signalGroup(sig syscall.Signal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pgid <= 0 {
		return false
	}
	return syscall.Kill(-s.pgid, sig) == nil
}

var signalByName = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE,
	"HUP": syscall.SIGHUP, "ILL": syscall.SIGILL, "INT": syscall.SIGINT,
	"KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE, "QUIT": syscall.SIGQUIT,
	"SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

// signalName is the signal's name without "SIG", as exit-signal carries it
// (RFC 4254 names first, then other Linux names, else "SIG<number>").
func signalName(sig syscall.Signal) string {
	for n, s := range signalByName {
		if s == sig {
			return n
		}
	}
	extra := map[syscall.Signal]string{
		syscall.SIGBUS: "BUS", syscall.SIGSYS: "SYS", syscall.SIGTRAP: "TRAP",
		syscall.SIGXCPU: "XCPU", syscall.SIGXFSZ: "XFSZ", syscall.SIGSTKFLT: "STKFLT",
		syscall.SIGVTALRM: "VTALRM", syscall.SIGPROF: "PROF", syscall.SIGIO: "IO",
		syscall.SIGPWR: "PWR",
	}
	if n, ok := extra[sig]; ok {
		return n
	}
	return fmt.Sprintf("SIG%d", int(sig))
}

// The stdin copy of a process: a small buffer while the client types, a
// large one once a read fills the small one (bulk input), given back when
// reads come back small. A large read drains many of x/crypto's 32 KiB
// packets at once, so the pipe sees one write where it saw eight and the
// channel sends fewer window adjustments; the pipe grows to pipeBulk so
// that such a write does not stall on the 64 KiB default while the reader
// catches up.
const (
	pipeSmallBuf = 4 << 10
	pipeLargeBuf = 256 << 10
	pipeBulk     = 1 << 20
)

var pipeBufPool = sync.Pool{New: func() any { b := make([]byte, pipeLargeBuf); return &b }}

// copyToPipe copies src to the pipe's write end w until src ends or a
// write fails.
func copyToPipe(w *os.File, src io.Reader) {
	small := make([]byte, pipeSmallBuf)
	var large *[]byte
	defer func() {
		if large != nil {
			pipeBufPool.Put(large)
		}
	}()
	grown := false
	for {
		buf := small
		if large != nil {
			buf = *large
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
		}
		if rerr != nil {
			return
		}
		switch {
		case large == nil && n == len(small):
			large = pipeBufPool.Get().(*[]byte)
			if !grown {
				grown = true
				setPipeSize(w, pipeBulk) // best-effort: a smaller pipe only costs more wakeups
			}
		case large != nil && n < pipeSmallBuf:
			pipeBufPool.Put(large)
			large = nil
		}
	}
}

// setPipeSize asks the kernel for a pipe buffer of size bytes (F_SETPIPE_SZ;
// an unprivileged process may go up to /proc/sys/fs/pipe-max-size).
func setPipeSize(f *os.File, size int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETPIPE_SZ, uintptr(size))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}
