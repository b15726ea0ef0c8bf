// Package watch lets someone watch a live PTY session, read only: a
// per-session broadcaster fed by the relay's output tap (never blocking it),
// the watched user's one-line notices and the audit events of every watch.
// Watchers are users of the gate (`ssh -t USER@GATE watch ID`, served by the
// broker and the account side) and administrators on the gate's host
// (`sshgate sessions watch ID`, over a unix socket in the data directory:
// socket.go). Who may watch what is decided by the callers; this package
// only broadcasts.
//
// Must not import: store/... broker sshd/... target/... auth/... policy account app cli live
package watch

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/relay"
)

// Defaults of Options.
const (
	DefaultBacklog = 16 << 10 // recent output a new watcher starts with
	DefaultQueue   = 1 << 20  // output queued for one watcher before it is dropped
	// MaxWatchers bounds the watches of one session (each may queue
	// Options.Queue bytes).
	MaxWatchers = 16
)

// ErrNotFound is a session that is not live on this gate (or not a PTY session).
var ErrNotFound = errors.New("no such live PTY session on this gate")

// ErrBusy is a session already watched MaxWatchers times.
var ErrBusy = errors.New("this session has as many watchers as it may have")

// Info describes a watchable session.
type Info struct {
	ID     string // session id (as `sshgate sessions` lists it)
	User   string // the watched user
	Target string
	Login  string
	Cols   uint32 // the terminal's size now
	Rows   uint32
}

// Who is a watcher, as the audit record and the watched user's notice name it.
type Who struct {
	Name   string // a gate user, or "admin NAME" for `sshgate sessions watch`
	ConnID string // the watcher's connection ("" for the admin socket)
}

// Options tune a Hub.
type Options struct {
	Backlog int // bytes of recent output kept per session (default DefaultBacklog; <0: none)
	Queue   int // bytes queued per watcher before it is dropped (default DefaultQueue)
	// Notice and NoticeEnd are the lines the watched user reads when a watch
	// starts and ends; "{watcher}" is replaced by Who.Name. "": no line.
	Notice, NoticeEnd string
	Emit              func(audit.Event) // the audit record; nil: none
}

// Hub holds one gate's watchable sessions.
type Hub struct {
	o        Options
	mu       sync.Mutex
	sessions map[string]*Session
}

// NewHub returns an empty hub.
func NewHub(o Options) *Hub {
	if o.Backlog == 0 {
		o.Backlog = DefaultBacklog
	}
	if o.Backlog < 0 {
		o.Backlog = 0
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	return &Hub{o: o, sessions: map[string]*Session{}}
}

// Session is one watchable session: a relay.Tap for its output.
type Session struct {
	h      *Hub
	notify func(line string) // writes one line on the watched user's terminal

	mu       sync.Mutex
	info     Info
	ring     []byte // the last Backlog bytes of output (allocated at the first byte)
	head     int    // where the next byte goes
	full     bool   // ring has wrapped
	watchers map[*Watcher]struct{}
	closed   bool
	notices  chan string // to the watched user, in order (started at the first watch)
}

// Add registers a live PTY session; notify writes one line on its user's
// terminal (it may block: it is called from a goroutine of the session's).
// Close unregisters it.
func (h *Hub) Add(info Info, notify func(line string)) *Session {
	s := &Session{h: h, notify: notify, info: info, watchers: map[*Watcher]struct{}{}}
	h.mu.Lock()
	h.sessions[info.ID] = s
	h.mu.Unlock()
	return s
}

// Lookup returns what the hub knows of session id.
func (h *Hub) Lookup(id string) (Info, bool) {
	h.mu.Lock()
	s := h.sessions[id]
	h.mu.Unlock()
	if s == nil {
		return Info{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info, !s.closed
}

// Count is the number of watchable sessions now.
func (h *Hub) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Data is the relay tap: the session's output (stdout and stderr) goes to
// the backlog and to every watcher's queue. It never blocks on a watcher:
// one whose queue is full is dropped.
func (s *Session) Data(st relay.Stream, p []byte) {
	if st == relay.ToTarget || len(p) == 0 {
		return
	}
	var dropped []*Watcher
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.keep(p)
	for w := range s.watchers {
		if len(w.buf)+len(p) > s.h.o.Queue {
			dropped = append(dropped, w)
			continue
		}
		w.buf = append(w.buf, p...)
		w.wakeUp()
	}
	s.mu.Unlock()
	for _, w := range dropped {
		w.finish(ReasonTooSlow)
	}
}

// keep writes p into the backlog ring. s.mu is held.
func (s *Session) keep(p []byte) {
	n := s.h.o.Backlog
	if n == 0 {
		return
	}
	if s.ring == nil {
		s.ring = make([]byte, n)
	}
	if len(p) >= n {
		copy(s.ring, p[len(p)-n:])
		s.head, s.full = 0, true
		return
	}
	c := copy(s.ring[s.head:], p)
	if c < len(p) {
		copy(s.ring, p[c:])
		s.full = true
	}
	s.head = (s.head + len(p)) % n
	if s.head == 0 && c == len(p) && len(p) > 0 {
		s.full = true
	}
}

// backlog is a copy of the kept output, oldest first. Once the ring has
// wrapped it starts after the first line end of what is kept, so that a
// watcher's terminal does not start in the middle of an escape sequence
// (when that line end is in the first half). s.mu is held.
func (s *Session) backlog() []byte {
	if s.ring == nil {
		return nil
	}
	if !s.full {
		return append([]byte(nil), s.ring[:s.head]...)
	}
	out := make([]byte, 0, len(s.ring))
	out = append(out, s.ring[s.head:]...)
	out = append(out, s.ring[:s.head]...)
	if i := bytes.IndexByte(out[:len(out)/2], '\n'); i >= 0 {
		out = out[i+1:]
	}
	return out
}

// Resize records the session's new terminal size.
func (s *Session) Resize(cols, rows uint32) {
	s.mu.Lock()
	s.info.Cols, s.info.Rows = cols, rows
	s.mu.Unlock()
}

// Close unregisters the session when it ends: every watcher is told it
// ended. Safe to call more than once.
func (s *Session) Close() {
	s.h.mu.Lock()
	if s.h.sessions[s.info.ID] == s {
		delete(s.h.sessions, s.info.ID)
	}
	s.h.mu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	ws := make([]*Watcher, 0, len(s.watchers))
	for w := range s.watchers {
		ws = append(ws, w)
	}
	if s.notices != nil {
		close(s.notices)
	}
	s.mu.Unlock()
	for _, w := range ws {
		w.finish(ReasonSessionEnded)
	}
}

// tell queues a notice for the watched user. s.mu is held.
func (s *Session) tell(tmpl string, who Who) {
	if tmpl == "" || s.closed {
		return
	}
	if s.notices == nil {
		s.notices = make(chan string, 16)
		go func(c <-chan string) {
			for line := range c {
				s.notify(line)
			}
		}(s.notices)
	}
	select {
	case s.notices <- strings.ReplaceAll(tmpl, "{watcher}", who.Name):
	default: // a flood of watches: the user has been told enough
	}
}

// Reasons a watch ends (the watch.end event's reason).
const (
	ReasonLeft         = "left"          // the watcher left (q, Ctrl-C, disconnected)
	ReasonSessionEnded = "session_ended" // the watched session ended
	ReasonTooSlow      = "too_slow"      // the watcher's queue overflowed
)

// Watcher is one watch of a session.
type Watcher struct {
	s       *Session
	who     Who
	info    Info
	started time.Time
	wake    chan struct{} // cap 1

	// under s.mu:
	buf    []byte
	spare  []byte // the buffer Next returned last, reused by the one after
	reason string // set when the watch ended
}

// Watch starts watching session id: the watcher's queue starts with the
// session's backlog; the watched user is told and the start is audited.
func (h *Hub) Watch(id string, who Who) (*Watcher, error) {
	h.mu.Lock()
	s := h.sessions[id]
	h.mu.Unlock()
	if s == nil {
		return nil, ErrNotFound
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrNotFound
	}
	if len(s.watchers) >= MaxWatchers {
		s.mu.Unlock()
		return nil, ErrBusy
	}
	w := &Watcher{s: s, who: who, info: s.info, started: time.Now(), wake: make(chan struct{}, 1), buf: s.backlog()}
	s.watchers[w] = struct{}{}
	s.tell(h.o.Notice, who)
	s.mu.Unlock()
	h.emit(audit.Event{Type: audit.TypeWatchStart, User: who.Name, ConnID: who.ConnID, SessionID: w.info.ID,
		Target: w.info.Target, Login: w.info.Login, WatchedUser: w.info.User})
	return w, nil
}

func (h *Hub) emit(e audit.Event) {
	if h.o.Emit != nil {
		h.o.Emit(e)
	}
}

// Info is the watched session as it was when the watch started (its size: now).
func (w *Watcher) Info() Info {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	i := w.info
	i.Cols, i.Rows = w.s.info.Cols, w.s.info.Rows
	return i
}

func (w *Watcher) wakeUp() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// finish ends the watch once: unregistered, the watched user told (unless
// their session is over), audited.
func (w *Watcher) finish(reason string) {
	s := w.s
	s.mu.Lock()
	if w.reason != "" {
		s.mu.Unlock()
		return
	}
	w.reason = reason
	if reason != ReasonSessionEnded { // the session's last output still goes out
		w.buf, w.spare = nil, nil
	}
	delete(s.watchers, w)
	if reason != ReasonSessionEnded {
		s.tell(s.h.o.NoticeEnd, w.who)
	}
	s.mu.Unlock()
	w.wakeUp()
	s.h.emit(audit.Event{Type: audit.TypeWatchEnd, User: w.who.Name, ConnID: w.who.ConnID, SessionID: w.info.ID,
		Target: w.info.Target, Login: w.info.Login, WatchedUser: w.info.User, Reason: reason,
		DurationMS: audit.Millis(time.Since(w.started))})
}

// Stop ends the watch (the watcher left). Safe to call more than once and
// after the watch ended.
func (w *Watcher) Stop() { w.finish(ReasonLeft) }

// Next waits for output and returns it, or returns the reason the watch
// ended (then with no data). done is closed when the watcher leaves: Next
// then stops the watch and returns ReasonLeft. The returned slice is valid
// until the next call of Next.
func (w *Watcher) Next(done <-chan struct{}) (data []byte, ended string) {
	for {
		s := w.s
		s.mu.Lock()
		data, ended = w.buf, w.reason
		// Two buffers in turn: the one handed out last time is free again.
		w.buf, w.spare = w.spare[:0], data
		s.mu.Unlock()
		if len(data) > 0 || ended != "" {
			return data, ended
		}
		select {
		case <-w.wake:
		case <-done:
			w.Stop()
			return nil, ReasonLeft
		}
	}
}

// EndLine is what a watcher reads when the watch ends for reason.
func EndLine(reason string) string {
	switch reason {
	case ReasonSessionEnded:
		return "the watched session ended"
	case ReasonTooSlow:
		return "watch ended: this terminal did not keep up with the session's output"
	}
	return "watch ended"
}
