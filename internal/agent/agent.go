package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/fdpass"
)

// Algorithms the agent offers. The client's order decides; the gate puts
// AES-GCM first.
var (
	KeyExchanges = []string{ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519, "curve25519-sha256@libssh.org"}
	Ciphers      = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305}
	MACs         = []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM}
)

// Options configure a Server.
type Options struct {
	HostKey ssh.Signer // required; ed25519

	// AuthorizedKeysFile is re-read when it changes. AuthorizedKeys is used
	// when no file is given (tests).
	AuthorizedKeysFile string
	AuthorizedKeys     *KeySet

	Shell string   // default: DefaultShell()
	Env   []string // KEY=VALUE set in every session, over anything else

	// Reap makes the agent reap every child that exits, orphans included
	// (it then also becomes a child subreaper). Set it when the agent is the
	// container's init. It must be the only thing in the process that waits
	// for children.
	Reap bool

	HandshakeTimeout time.Duration // default 30s
	Logger           *slog.Logger  // default: discard
}

// Server serves SSH connections for one container.
type Server struct {
	cfg     *ssh.ServerConfig
	keys    *keySource
	shell   string
	env     []string
	user    userInfo
	procs   *procStarter
	log     *slog.Logger
	timeout time.Duration
	nextID  atomic.Uint64

	mu       sync.Mutex
	sessions map[*session]struct{}
}

// New checks the options and builds a Server.
func New(opts Options) (*Server, error) {
	if opts.HostKey == nil {
		return nil, errors.New("no host key")
	}
	s := &Server{
		keys:     &keySource{path: opts.AuthorizedKeysFile, keys: opts.AuthorizedKeys},
		shell:    opts.Shell,
		log:      opts.Logger,
		timeout:  opts.HandshakeTimeout,
		sessions: map[*session]struct{}{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.timeout == 0 {
		s.timeout = 30 * time.Second
	}
	if opts.AuthorizedKeysFile != "" {
		if _, err := s.keys.get(); err != nil {
			return nil, err
		}
	} else if opts.AuthorizedKeys == nil {
		return nil, errors.New("no authorized keys")
	}
	if s.shell == "" {
		s.shell = DefaultShell()
	}
	for _, kv := range opts.Env {
		if err := checkEnvPair(kv); err != nil {
			return nil, err
		}
	}
	s.env = append([]string(nil), opts.Env...)
	s.user = currentUser()
	var err error
	if s.procs, err = newProcStarter(opts.Reap); err != nil {
		return nil, err
	}
	cfg := &ssh.ServerConfig{
		Config: ssh.Config{
			KeyExchanges: KeyExchanges,
			Ciphers:      Ciphers,
			MACs:         MACs,
		},
		// PublicKeyCallback is set per connection, from the current keys.
		ServerVersion: "SSH-2.0-sshgate-agent",
		MaxAuthTries:  6,
	}
	cfg.AddHostKey(opts.HostKey)
	s.cfg = cfg
	return s, nil
}

// checkEnvPair validates a --env KEY=VALUE.
func checkEnvPair(kv string) error {
	k, _, ok := strings.Cut(kv, "=")
	if !ok || k == "" || strings.ContainsAny(k, "\x00") || strings.ContainsRune(kv, 0) {
		return fmt.Errorf("bad environment entry %q (want KEY=VALUE)", kv)
	}
	return nil
}

// DefaultShell is $SHELL if set, else the first of /bin/bash, /bin/sh,
// /bin/ash, /busybox/sh that exists, else /bin/sh.
func DefaultShell() string {
	if sh := os.Getenv("SHELL"); sh != "" {
		return sh
	}
	for _, p := range []string{"/bin/bash", "/bin/sh", "/bin/ash", "/busybox/sh"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return "/bin/sh"
}

// Serve runs one SSH connection to its end and closes conn. Every session
// started on it has been told to stop by the time it returns.
func (s *Server) Serve(conn net.Conn) error {
	if uc, ok := conn.(*net.UnixConn); ok {
		return s.ServeUnix(uc, nil)
	}
	return s.serve(conn, nil)
}

// ServeUnix is Serve for a unix socket connection from which first was
// already read: the gate may pass a session's stdin pipe on it (package
// fdpass, StdinPipeRequest).
func (s *Server) ServeUnix(uc *net.UnixConn, first []byte) error {
	fds := fdpass.NewReceiver(uc, first)
	return s.serve(fds, fds)
}

func (s *Server) serve(conn net.Conn, fds *fdpass.Receiver) error {
	defer conn.Close()
	id := s.nextID.Add(1)
	log := s.log.With("conn_id", id)

	keys, err := s.keys.get()
	if err != nil {
		log.Warn("authorized keys", "err", err) // keys is the last good set
	}
	cfg := *s.cfg
	cfg.PublicKeyCallback = publicKeyCallback(keys)
	cfg.VerifiedPublicKeyCallback = verifiedKeyCallback

	_ = conn.SetDeadline(time.Now().Add(s.timeout))
	sconn, chans, reqs, err := ssh.NewServerConn(conn, &cfg)
	if err != nil {
		return fmt.Errorf("ssh handshake: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	defer sconn.Close()
	if fds != nil {
		fds.Accept()
	}
	log.Info("connection", "user", sconn.User(), "method", sconn.Permissions.Extensions[extMethod],
		"key", sconn.Permissions.Extensions[extKey], "cert_id", sconn.Permissions.Extensions[extCertID])

	c := &connState{srv: s, sconn: sconn, log: log, fds: fds, forwards: map[string]net.Listener{}, conns: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.globalRequests(reqs)
	}()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.handleSession(nc)
			}()
		case "direct-tcpip":
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.handleDirectTCPIP(nc)
			}()
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "channel type not supported")
		}
	}
	err = sconn.Wait()
	sconn.Close()
	c.closeForwards()
	wg.Wait()
	log.Info("connection closed", "reason", err)
	return nil
}

// ServeListener accepts connections until ctx is done or the listener
// fails, serving each in its own goroutine. It waits for them to end.
func (s *Server) ServeListener(ctx context.Context, l net.Listener) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var conns sync.Map
	defer func() {
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			// EMFILE and the like: back off and keep serving.
			s.log.Warn("accept", "err", err)
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		conns.Store(conn, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conns.Delete(conn)
			if err := s.Serve(conn); err != nil {
				s.log.Info("connection ended", "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// Shutdown sends SIGHUP, then SIGKILL after grace, to every running session's
// process group.
func (s *Server) Shutdown(grace time.Duration) {
	s.mu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.Unlock()
	for _, ss := range list {
		ss.signalGroup(sigHUP)
	}
	if grace > 0 && len(list) > 0 {
		time.Sleep(grace)
	}
	for _, ss := range list {
		ss.signalGroup(sigKILL)
	}
}

func (s *Server) track(ss *session, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.sessions[ss] = struct{}{}
	} else {
		delete(s.sessions, ss)
	}
}

// connState is one SSH connection.
type connState struct {
	srv   *Server
	sconn *ssh.ServerConn
	log   *slog.Logger
	fds   *fdpass.Receiver // nil unless the connection is a unix socket

	mu       sync.Mutex
	closed   bool
	forwards map[string]net.Listener // "addr\x00port" as requested
	conns    map[net.Conn]struct{}   // forwarded TCP connections
}

func (c *connState) globalRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "tcpip-forward":
			ok, payload := c.tcpipForward(req.Payload)
			_ = req.Reply(ok, payload)
		case "cancel-tcpip-forward":
			_ = req.Reply(c.cancelTCPIPForward(req.Payload), nil)
		default: // keepalive@openssh.com, no-more-sessions@openssh.com, ...
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}
}

// userInfo is the account the agent runs as.
type userInfo struct {
	name string
	home string
}

// currentUser finds the user name and home: $HOME, else /etc/passwd, else
// "/"; $USER, else /etc/passwd, else the numeric uid.
func currentUser() userInfo {
	uid := strconv.Itoa(os.Getuid())
	u := userInfo{name: os.Getenv("USER"), home: os.Getenv("HOME")}
	if u.name == "" || u.home == "" {
		if f, err := os.Open("/etc/passwd"); err == nil {
			defer f.Close()
			name, home := passwdLookup(f, uid)
			if u.name == "" {
				u.name = name
			}
			if u.home == "" {
				u.home = home
			}
		}
	}
	if u.name == "" {
		u.name = uid
	}
	if u.home == "" {
		u.home = "/"
	}
	u.home = filepath.Clean(u.home)
	return u
}

func passwdLookup(r io.Reader, uid string) (name, home string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 6 && f[2] == uid {
			return f[0], f[5]
		}
	}
	return "", ""
}

// GC settings of the agent process (TuneGC). x/crypto allocates a fresh
// slice for every packet it reads, so a bulk upload allocates what it
// carries: at the default GOGC of 100 and the agent's few MiB of live heap
// that is a collection every 4 MiB, a quarter of the agent's CPU per GiB.
// At 400 collections come a quarter as often; the memory limit keeps the
// heap of an agent holding many full channel windows (2 MiB each) in check.
const (
	gcPercent   = 400
	memoryLimit = 64 << 20
)

// TuneGC applies gcPercent and memoryLimit unless the environment sets
// GOGC or GOMEMLIMIT. The agent's main calls it; it changes the process.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}
