package watch

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxSocketPath is what a unix socket address holds (sun_path, with its NUL).
const maxSocketPath = 107

// The protocol: the client writes one line "watch ID\n"; the gate answers
// one line, "ok HEADER\n" (then the session's output, raw, until the watch
// ends, with the end's line last), or "no MESSAGE\n" (not a live PTY
// session here) or "busy MESSAGE\n" (then closes). The
// client leaves by closing its side.
const (
	maxRequest     = 64
	requestTimeout = 5 * time.Second
	writeTimeout   = 30 * time.Second
)

var idRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// ValidID reports whether id looks like a session id (16 hex digits).
func ValidID(id string) bool { return idRE.MatchString(id) }

// ParseRequest reads the client's request line (without its newline).
func ParseRequest(line string) (id string, err error) {
	verb, arg, ok := strings.Cut(line, " ")
	if !ok || verb != "watch" || !ValidID(arg) {
		return "", errors.New("bad request")
	}
	return arg, nil
}

// The admin socket (DATA/watch.sock) is served by the gate to its own uid
// and root only: mode 0600 in the 0700 data directory, and the peer's uid
// checked again with SO_PEERCRED on every connection. `sshgate sessions
// watch` connects to it.

// Listen creates the admin socket at path, replacing a stale one (the
// caller holds the data directory's serve lock), mode 0600.
func Listen(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is longer than %d bytes", path, maxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return ln, nil
}

// Server serves the admin socket.
type Server struct {
	hub *Hub
	log *slog.Logger
	ln  net.Listener
	wg  sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Serve accepts admin watchers on ln until Close.
func Serve(ln net.Listener, hub *Hub, log *slog.Logger) *Server {
	s := &Server{hub: hub, log: log, ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Close stops accepting, ends every admin watch and waits for them.
func (s *Server) Close() {
	_ = s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			_ = c.Close()
		}()
	}
}

// serve runs one admin watch.
func (s *Server) serve(c net.Conn) {
	uid, err := peerUID(c)
	if err != nil || (uid != os.Getuid() && uid != 0) {
		s.log.Warn("watch socket: refused a peer", "uid", uid, "err", err)
		return
	}
	who := Who{Name: "admin " + userName(uid)}
	_ = c.SetReadDeadline(time.Now().Add(requestTimeout))
	r := bufio.NewReaderSize(c, maxRequest*2)
	line, err := r.ReadSlice('\n')
	if err != nil || len(line) > maxRequest {
		_, _ = io.WriteString(c, "no bad request\n")
		return
	}
	id, err := ParseRequest(strings.TrimSuffix(string(line), "\n"))
	if err != nil {
		_, _ = io.WriteString(c, "no bad request\n")
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	w, err := s.hub.Watch(id, who)
	if errors.Is(err, ErrBusy) {
		_, _ = fmt.Fprintf(c, "busy session %s has as many watchers as it may have (%d)\n", id, MaxWatchers)
		return
	}
	if err != nil {
		_, _ = fmt.Fprintf(c, "no session %s is not a live PTY session on this gate\n", id)
		return
	}
	defer w.Stop()
	s.log.Info("admin watching a session", "session_id", id, "watcher", who.Name)
	if _, err := fmt.Fprintf(c, "ok %s\n", Header(w.Info())); err != nil {
		return
	}
	done := make(chan struct{})
	go func() { // the client leaves by closing its side
		_, _ = io.Copy(io.Discard, r)
		close(done)
	}()
	for {
		data, ended := w.Next(done)
		if len(data) > 0 {
			_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := c.Write(data); err != nil {
				return
			}
		}
		if ended != "" {
			if ended != ReasonLeft {
				_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
				_, _ = io.WriteString(c, "\r\nsshgate: "+EndLine(ended)+"\r\n")
			}
			return
		}
	}
}

// Header describes the watched session in one line.
func Header(i Info) string {
	login := ""
	if i.Login != "" {
		login = " as " + i.Login
	}
	return fmt.Sprintf("watching session %s (%s on %s%s, %dx%d), read only; q or Ctrl-C to leave", i.ID, i.User, i.Target, login, i.Cols, i.Rows)
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid " + strconv.Itoa(uid)
}

// Refused is the gate's answer to a watch it does not serve.
type Refused struct {
	Msg  string
	Busy bool // the session is here, with as many watchers as it may have
}

func (r *Refused) Error() string { return r.Msg }

// Dial asks the gate serving the admin socket at path to watch session
// id. It returns the connection, positioned at the session's output, and
// the gate's header line; a refusal is a *Refused.
func Dial(path, id string) (net.Conn, string, error) {
	c, err := net.DialTimeout("unix", path, requestTimeout)
	if err != nil {
		return nil, "", err
	}
	_ = c.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := fmt.Fprintf(c, "watch %s\n", id); err != nil {
		_ = c.Close()
		return nil, "", err
	}
	// One byte at a time: what follows the line is the session's output,
	// read by the caller from c.
	var line []byte
	b := make([]byte, 1)
	for len(line) < 1024 {
		if _, err := c.Read(b); err != nil {
			_ = c.Close()
			return nil, "", fmt.Errorf("read the gate's answer: %w", err)
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	_ = c.SetDeadline(time.Time{})
	verb, rest, _ := strings.Cut(string(line), " ")
	switch verb {
	case "ok":
		return c, rest, nil
	case "no", "busy":
		_ = c.Close()
		return nil, "", &Refused{Msg: rest, Busy: verb == "busy"}
	}
	_ = c.Close()
	return nil, "", errors.New("the gate's answer is not understood")
}
