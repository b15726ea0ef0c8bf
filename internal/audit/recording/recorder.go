// Package recording writes interactive (PTY) sessions as asciicast v2 files,
// one per session, named by session id, through a path-safe root; reads them
// back (Reader, for `sshgate replay` and tests); and neutralises terminal
// escape sequences that could harm the operator who replays one (Sanitizer).
//
// Recording never blocks the relay: the relay's copiers hand the recorder a
// copy of each chunk, a single writer goroutine encodes and writes it, and
// the queue between them is bounded; a full queue or a write error ends the
// recording and is reported once through Options.OnError, whose caller
// decides whether the session may go on (fail-open) or not (fail-closed).
//
// It imports relay (for the stream names) and nothing else of the project.
//
// Must not import: broker sshd/... store/... target/... auth/... policy app audit/xfer
package recording

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sshgate/sshgate/internal/relay"
)

// Header is the first line of an asciicast v2 file.
type Header struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// Event is one line after the header: [time, type, data].
type Event struct {
	Time float64 // seconds since the start
	Type string  // "o" output, "i" input, "r" resize ("COLSxROWS"), "m" marker
	Data string
}

// Options tune a recording.
type Options struct {
	// Input records what the user typed ("i" events). Off by default: input
	// holds passwords typed at prompts.
	Input bool
	// OnError is called once, in its own goroutine, when the recording
	// fails (a write error, or the writer fell too far behind). The
	// recording stops; the session is the caller's business.
	OnError func(error)
	// MaxPending bounds the bytes queued for the writer (default 8 MiB).
	MaxPending int64
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Dir is the recordings directory, opened as a root: names never lead out
// of it (no "..", no symlinks followed outside).
type Dir struct {
	root *os.Root
	path string

	mu   sync.Mutex
	live map[string]bool // recordings being written: Prune leaves them
}

// OpenDir creates (0700) and opens the recordings directory.
func OpenDir(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("create recordings directory: %w", err)
	}
	r, err := os.OpenRoot(path)
	if err != nil {
		return nil, fmt.Errorf("open recordings directory: %w", err)
	}
	return &Dir{root: r, path: path}, nil
}

// Path is the directory's path.
func (d *Dir) Path() string { return d.path }

// Close closes the directory root.
func (d *Dir) Close() error { return d.root.Close() }

var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// FileName is the file a session's recording is written to.
func FileName(id string) string { return id + ".cast" }

// Recorder records one session. It is a relay.Tap; Resize and Close may be
// called from any goroutine.
type Recorder struct {
	opts  Options
	start time.Time
	f     io.WriteCloser

	mu      sync.Mutex // guards closed and sends on events
	closed  bool
	events  chan event
	pending atomic.Int64
	failed  atomic.Bool
	done    chan struct{}
	cmu     sync.Mutex // guards carry: the relay may still call Data while Close runs
	carry   [3][]byte  // per relay stream: an incomplete UTF-8 sequence
}

type event struct {
	t    time.Time
	typ  string
	data []byte
}

var _ relay.Tap = (*Recorder)(nil)

// Create starts the recording of session id: the file id.cast, created new
// (an existing file is an error), private, with h written first. h.Version
// and h.Timestamp are filled in.
func (d *Dir) Create(id string, h Header, o Options) (*Recorder, error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("create recording: invalid session id %q", id)
	}
	d.setLive(id, true) // before the file exists: Prune never sees it unmarked
	f, err := d.root.OpenFile(FileName(id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		d.setLive(id, false)
		return nil, fmt.Errorf("create recording: %w", err)
	}
	r, err := newRecorder(&liveFile{File: f, done: func() { d.setLive(id, false) }}, h, o)
	if err != nil {
		_ = f.Close()
		d.setLive(id, false)
		return nil, err
	}
	return r, nil
}

// New records to w (which Close closes): for tests and other sinks.
func New(w io.WriteCloser, h Header, o Options) (*Recorder, error) { return newRecorder(w, h, o) }

func newRecorder(f io.WriteCloser, h Header, o Options) (*Recorder, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 8 << 20
	}
	r := &Recorder{opts: o, start: o.Now(), f: f, events: make(chan event, 4096), done: make(chan struct{})}
	h.Version = 2
	h.Timestamp = r.start.Unix()
	line, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode recording header: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("write recording header: %w", err)
	}
	go r.write()
	return r, nil
}

// Data records a chunk the relay moved: output to the user always, input
// only with Options.Input. A UTF-8 sequence split between chunks is held
// back until its end arrives, so the JSON carries the character whole.
func (r *Recorder) Data(s relay.Stream, p []byte) {
	typ := "o"
	if s == relay.ToTarget {
		if !r.opts.Input {
			return
		}
		typ = "i"
	}
	if int(s) >= len(r.carry) || r.failed.Load() {
		return
	}
	r.cmu.Lock()
	buf := make([]byte, 0, len(r.carry[s])+len(p))
	buf = append(append(buf, r.carry[s]...), p...)
	whole, rest := splitUTF8(buf)
	r.carry[s] = append(r.carry[s][:0], rest...)
	r.cmu.Unlock()
	if len(whole) > 0 {
		r.send(event{t: r.opts.Now(), typ: typ, data: whole})
	}
}

// Resize records a window change.
func (r *Recorder) Resize(cols, rows uint32) {
	r.send(event{t: r.opts.Now(), typ: "r", data: []byte(fmt.Sprintf("%dx%d", cols, rows))})
}

func (r *Recorder) send(e event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.failed.Load() {
		return
	}
	if r.pending.Add(int64(len(e.data))) > r.opts.MaxPending {
		r.fail(errors.New("the recording fell behind the session"))
		return
	}
	select {
	case r.events <- e:
	default:
		r.fail(errors.New("the recording fell behind the session"))
	}
}

// fail stops the recording and reports err once.
func (r *Recorder) fail(err error) {
	if r.failed.Swap(true) {
		return
	}
	if r.opts.OnError != nil {
		go r.opts.OnError(err)
	}
}

// Failed reports whether the recording stopped on an error.
func (r *Recorder) Failed() bool { return r.failed.Load() }

// Close flushes what is queued (and any held-back bytes), closes the file
// and waits for the writer. Idempotent.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		<-r.done
		return nil
	}
	r.cmu.Lock()
	carry := r.carry
	r.carry = [3][]byte{}
	r.cmu.Unlock()
	for s, c := range carry {
		if len(c) > 0 && !r.failed.Load() {
			typ := "o"
			if relay.Stream(s) == relay.ToTarget {
				typ = "i"
			}
			select {
			case r.events <- event{t: r.opts.Now(), typ: typ, data: c}:
			default:
			}
		}
	}
	r.closed = true
	close(r.events)
	r.mu.Unlock()
	<-r.done
	return nil
}

// write is the writer goroutine: it encodes events until Close, flushing
// whenever the queue is empty so the file follows the session closely.
func (r *Recorder) write() {
	defer close(r.done)
	w := bufio.NewWriterSize(r.f, 64<<10)
	var line bytes.Buffer
	var werr error
	for e := range r.events {
		r.pending.Add(-int64(len(e.data)))
		if werr != nil || r.failed.Load() {
			continue // drain
		}
		line.Reset()
		appendEvent(&line, e.t.Sub(r.start).Seconds(), e.typ, e.data)
		if _, werr = w.Write(line.Bytes()); werr == nil && len(r.events) == 0 {
			werr = w.Flush()
		}
		if werr != nil {
			r.fail(fmt.Errorf("write recording: %w", werr))
		}
	}
	if werr == nil {
		werr = w.Flush()
		if werr != nil {
			r.fail(fmt.Errorf("write recording: %w", werr))
		}
	}
	if err := r.f.Close(); err != nil && werr == nil {
		r.fail(fmt.Errorf("close recording: %w", err))
	}
}

// appendEvent writes one event line: [1.234567, "o", "data"].
func appendEvent(b *bytes.Buffer, t float64, typ string, data []byte) {
	b.WriteByte('[')
	b.WriteString(strconv.FormatFloat(math.Round(t*1e6)/1e6, 'f', -1, 64))
	b.WriteString(`, "`)
	b.WriteString(typ)
	b.WriteString(`", `)
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(string(data)) // invalid UTF-8 becomes U+FFFD; Encode adds '\n'
	b.Truncate(b.Len() - 1)
	b.WriteString("]\n")
}

// splitUTF8 splits b before a trailing UTF-8 sequence that is incomplete
// (its first bytes arrived, the rest has not yet). Invalid bytes stay in
// whole: the JSON encoder replaces them.
func splitUTF8(b []byte) (whole, rest []byte) {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		c := b[i]
		if c < utf8.RuneSelf {
			return b, nil // ASCII: nothing pending
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[i:]) {
				return b, nil
			}
			return b[:i], b[i:]
		}
	}
	return b, nil
}

// liveFile marks its recording finished when closed.
type liveFile struct {
	*os.File
	done func()
	once sync.Once
}

func (f *liveFile) Close() error {
	err := f.File.Close()
	f.once.Do(f.done)
	return err
}
