package watch

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/relay"
)

type events struct {
	mu sync.Mutex
	ev []audit.Event
}

func (e *events) emit(ev audit.Event) { e.mu.Lock(); e.ev = append(e.ev, ev); e.mu.Unlock() }
func (e *events) types() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ts []string
	for _, ev := range e.ev {
		ts = append(ts, ev.Type+":"+ev.Reason)
	}
	return ts
}

type lines struct {
	mu sync.Mutex
	l  []string
	c  chan struct{}
}

func newLines() *lines { return &lines{c: make(chan struct{}, 100)} }
func (l *lines) add(s string) {
	l.mu.Lock()
	l.l = append(l.l, s)
	l.mu.Unlock()
	l.c <- struct{}{}
}
func (l *lines) wait(t *testing.T, n int) []string {
	t.Helper()
	for {
		l.mu.Lock()
		got := append([]string(nil), l.l...)
		l.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-l.c:
		case <-time.After(10 * time.Second):
			t.Fatalf("notices: got %q, want %d", got, n)
		}
	}
}

func info() Info {
	return Info{ID: "0123456789abcdef", User: "alice", Target: "web-1", Login: "root", Cols: 80, Rows: 24}
}

// collect reads a watcher until want is seen (or the watch ends).
func collect(t *testing.T, w *Watcher, want string) (string, string) {
	t.Helper()
	var got bytes.Buffer
	for !strings.Contains(got.String(), want) {
		data, ended := w.Next(nil)
		got.Write(data)
		if ended != "" {
			return got.String(), ended
		}
	}
	return got.String(), ""
}

func TestBroadcast(t *testing.T) {
	ev := &events{}
	h := NewHub(Options{Backlog: 32, Notice: "{watcher} is watching", NoticeEnd: "{watcher} stopped", Emit: ev.emit})
	notes := newLines()
	s := h.Add(info(), notes.add)
	s.Data(relay.ToUser, []byte("line one\r\nsecret typed"))
	s.Data(relay.ToTarget, []byte("never shown")) // input: the echo is what watchers see
	if _, err := h.Watch("ffffffffffffffff", Who{Name: "bob"}); err != ErrNotFound {
		t.Fatalf("unknown id: %v", err)
	}
	w, err := h.Watch(info().ID, Who{Name: "bob", ConnID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := collect(t, w, "secret typed"); got != "line one\r\nsecret typed" {
		t.Fatalf("backlog %q", got)
	}
	s.Data(relay.ToUserStderr, []byte("err"))
	s.Data(relay.ToUser, []byte("out"))
	if got, _ := collect(t, w, "errout"); got != "errout" {
		t.Fatalf("live %q", got)
	}
	if n := notes.wait(t, 1); n[0] != "bob is watching" {
		t.Fatalf("notice %q", n)
	}
	w.Stop()
	w.Stop()
	if n := notes.wait(t, 2); n[1] != "bob stopped" {
		t.Fatalf("end notice %q", n)
	}
	if _, ended := w.Next(nil); ended != ReasonLeft {
		t.Fatalf("after stop: %q", ended)
	}
	w2, _ := h.Watch(info().ID, Who{Name: "carol"})
	s.Close()
	s.Close()
	if _, ended := collect(t, w2, "\x00never"); ended != ReasonSessionEnded {
		t.Fatalf("after close: %q", ended)
	}
	if _, ok := h.Lookup(info().ID); ok || h.Count() != 0 {
		t.Fatal("closed session still listed")
	}
	s.Data(relay.ToUser, []byte("after the end")) // the tap stays safe after the relay returns
	want := "watch.start: watch.end:left watch.start: watch.end:session_ended"
	if got := strings.Join(ev.types(), " "); got != want {
		t.Fatalf("audit %s, want %s", got, want)
	}
	e := ev.ev[0]
	if e.User != "bob" || e.ConnID != "c1" || e.SessionID != info().ID || e.Target != "web-1" || e.WatchedUser != "alice" || e.Login != "root" {
		t.Fatalf("start event %+v", e)
	}
	if ev.ev[1].DurationMS == nil {
		t.Fatal("end event has no duration")
	}
}

func TestSlowWatcherDropped(t *testing.T) {
	ev := &events{}
	h := NewHub(Options{Backlog: -1, Queue: 1000, Emit: ev.emit})
	s := h.Add(info(), func(string) {})
	slow, _ := h.Watch(info().ID, Who{Name: "slow"})
	fast, _ := h.Watch(info().ID, Who{Name: "fast"})
	chunk := bytes.Repeat([]byte("x"), 300)
	for i := 0; i < 10; i++ { // never blocks, whatever the watchers do
		s.Data(relay.ToUser, chunk)
		if i < 3 {
			if data, _ := fast.Next(nil); len(data) != 300 {
				t.Fatalf("fast got %d", len(data))
			}
		}
	}
	if _, ended := slow.Next(nil); ended != ReasonTooSlow {
		t.Fatalf("slow: %q", ended)
	}
	if _, ended := fast.Next(nil); ended != ReasonTooSlow {
		t.Fatalf("fast stopped reading too: %q", ended)
	}
}

func TestMaxWatchers(t *testing.T) {
	h := NewHub(Options{})
	h.Add(info(), func(string) {})
	var ws []*Watcher
	for i := 0; i < MaxWatchers; i++ {
		w, err := h.Watch(info().ID, Who{Name: "w"})
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		ws = append(ws, w)
	}
	if _, err := h.Watch(info().ID, Who{Name: "one too many"}); err != ErrBusy {
		t.Fatalf("watch %d: %v, want ErrBusy", MaxWatchers+1, err)
	}
	ws[0].Stop()
	if _, err := h.Watch(info().ID, Who{Name: "w"}); err != nil {
		t.Fatalf("after one left: %v", err)
	}
}

func TestBacklog(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"short", []string{"ab", "cd"}, "abcd"},
		{"exactly full", []string{"0123456789"}, "0123456789"},
		{"wrapped, cut after a line end", []string{"aaaa\nbbbb", "cc\nd"}, "bbbbcc\nd"},
		{"wrapped, no line end early", []string{"abcdefghij", "klm"}, "defghijklm"},
		{"one big write", []string{"zzzzzzzzzz\x1b[1\nxyzrest"}, "xyzrest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHub(Options{Backlog: 10})
			s := h.Add(info(), func(string) {})
			for _, w := range tt.writes {
				s.Data(relay.ToUser, []byte(w))
			}
			s.mu.Lock()
			got := string(s.backlog())
			s.mu.Unlock()
			if got != tt.want {
				t.Fatalf("backlog %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	for line, ok := range map[string]bool{
		"watch 0123456789abcdef": true, "watch 0123456789ABCDEF": false, "watch 0123456789abcde": false,
		"watch  0123456789abcdef": false, "kill 0123456789abcdef": false, "": false, "watch": false,
	} {
		if _, err := ParseRequest(line); (err == nil) != ok {
			t.Errorf("%q: err %v", line, err)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add("watch 0123456789abcdef")
	f.Add("watch \x00")
	f.Fuzz(func(t *testing.T, line string) {
		id, err := ParseRequest(line)
		if err == nil && (!ValidID(id) || line != "watch "+id) {
			t.Fatalf("%q accepted as %q", line, id)
		}
	})
}

func TestSocket(t *testing.T) {
	ev := &events{}
	h := NewHub(Options{Emit: ev.emit})
	s := h.Add(info(), func(string) {})
	s.Data(relay.ToUser, []byte("before\r\n"))
	path := filepath.Join(t.TempDir(), "watch.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer srv.Close()
	if _, _, err := Dial(path, "ffffffffffffffff"); err == nil || !strings.Contains(err.Error(), "not a live PTY session") {
		t.Fatalf("unknown id: %v", err)
	}
	c, header, err := Dial(path, info().ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(header, "alice on web-1 as root, 80x24") {
		t.Fatalf("header %q", header)
	}
	s.Data(relay.ToUser, []byte("after"))
	s.Close()
	out, _ := io.ReadAll(c)
	c.Close()
	if got := string(out); got != "before\r\nafter\r\nsshgate: the watched session ended\r\n" {
		t.Fatalf("stream %q", got)
	}
	// A raw client that sends garbage is answered and closed.
	rc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(rc, "hello\n")
	ans, _ := io.ReadAll(rc)
	rc.Close()
	if string(ans) != "no bad request\n" {
		t.Fatalf("garbage answered %q", ans)
	}
	if got := strings.Join(ev.types(), " "); got != "watch.start: watch.end:session_ended" {
		t.Fatalf("audit %s", got)
	}
	if ev.ev[0].User == "" || !strings.HasPrefix(ev.ev[0].User, "admin ") {
		t.Fatalf("admin watcher named %q", ev.ev[0].User)
	}
}

// BenchmarkData is the relay tap's cost per chunk of PTY output, with 0 to
// 4 watchers reading as fast as they can.
func BenchmarkData(b *testing.B) {
	for _, n := range []int{0, 1, 4} {
		for _, size := range []int{2 << 10, 32 << 10} {
			b.Run(strconv.Itoa(n)+"watchers/"+strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
				h := NewHub(Options{Queue: 64 << 20})
				s := h.Add(info(), func(string) {})
				done := make(chan struct{})
				var wg sync.WaitGroup
				for i := 0; i < n; i++ {
					w, _ := h.Watch(info().ID, Who{Name: "w"})
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							if _, ended := w.Next(done); ended != "" {
								return
							}
						}
					}()
				}
				p := bytes.Repeat([]byte("x"), size)
				b.SetBytes(int64(size))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					s.Data(relay.ToUser, p)
				}
				b.StopTimer()
				close(done)
				s.Close()
				wg.Wait()
			})
		}
	}
}
