package audit

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func fixedOptions() Options {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var n atomic.Int64
	return Options{
		GateID: "gate-1",
		Now:    func() time.Time { return t0.Add(time.Duration(n.Load()) * time.Second) },
		NewID:  func() string { return fmt.Sprintf("ev%04d", n.Add(1)) },
	}
}

// memSink keeps lines; fail makes writes fail.
type memSink struct {
	mu    sync.Mutex
	lines []string
	fail  atomic.Bool
	block chan struct{}
}

func (m *memSink) Name() string { return "mem" }
func (m *memSink) Write(ctx context.Context, line []byte) error {
	if m.block != nil {
		<-m.block
	}
	if m.fail.Load() {
		return errors.New("broken")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines = append(m.lines, string(line))
	return nil
}
func (m *memSink) Close() error { return nil }
func (m *memSink) text() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.lines, "")
}

func TestGoldenStream(t *testing.T) {
	m := &memSink{}
	l := New(fixedOptions(), m)
	for _, e := range []Event{
		{Type: TypeConnOpen, ConnID: "c1", ClientAddr: "127.0.0.1:5555", User: "alice", AuthMethod: "publickey", KeyFP: "SHA256:abc"},
		{Type: TypeAuthFailure, ClientAddr: "127.0.0.1:5556", User: "mallory\x1b]0;pwned\x07", AuthMethod: "password", Reason: "denied"},
		{Type: TypeTargetChosen, ConnID: "c1", User: "alice", Target: "web-1", Login: "root"},
		{Type: TypeSessionStart, ConnID: "c1", SessionID: "s1", SessionType: "exec", Target: "web-1", Login: "root"},
		{Type: TypeExec, ConnID: "c1", SessionID: "s1", Command: "echo \x1b[31mred\u009b\x7f \xff\xfe"},
		{Type: TypePTY, ConnID: "c1", SessionID: "s1", Term: "xterm", Cols: 80, Rows: 24},
		{Type: TypeFile, ConnID: "c1", SessionID: "s1", Protocol: "sftp", Op: "write", Path: "/tmp/a\nb", Direction: "upload", Size: Int64(0), SHA256: "e3b0", Result: "ok"},
		{Type: TypeForward, ConnID: "c1", Channel: "direct-tcpip", Destination: "127.0.0.1:5432", BytesIn: Int64(3), BytesOut: Int64(4), DurationMS: Int64(10)},
		{Type: TypeSessionEnd, ConnID: "c1", SessionID: "s1", ExitStatus: Uint32(0), BytesIn: Int64(0), BytesOut: Int64(12), DurationMS: Int64(1500)},
		{Type: TypeConnClose, ConnID: "c1", User: "alice", DurationMS: Int64(2000)},
	} {
		l.Emit(e)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := m.text()
	for _, bad := range []string{"\x1b", "\x07", "\x7f", "\u009b", "\xff", "\r"} {
		if strings.Contains(got, bad) {
			t.Errorf("raw %q in the stream", bad)
		}
	}
	golden := filepath.Join("testdata", "stream.golden.jsonl")
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("stream differs from %s (run with -update):\n%s", golden, got)
	}
}

func TestEncodeEscapes(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{"\x1b[2J", `"\u001b[2J"`},
		{"a\u0085b\u009bc", `"a\u0085b\u009bc"`},
		{"del\x7f", `"del\u007f"`},
		{"bad\xffutf", `"bad\\xffutf"`},
		{"é ok", `"é ok"`},
		{"\u2028", `"\u2028"`},
	}
	for _, tc := range tests {
		line, err := Encode(&Event{Type: TypeExec, Command: tc.in})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(line, []byte(`"command":`+tc.want)) {
			t.Errorf("Encode(%q) = %s, want command %s", tc.in, line, tc.want)
		}
	}
}

func FuzzEncode(f *testing.F) {
	f.Add("a\x1b\u009b\xff\x7f")
	f.Fuzz(func(t *testing.T, s string) {
		line, err := Encode(&Event{Type: s, Command: s, Path: s})
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range line[:len(line)-1] {
			if b < 0x20 || b == 0x7f {
				t.Fatalf("raw control byte %#x at %d in %q", b, i, line)
			}
		}
		if bytes.Contains(line, []byte{0xc2, 0x9b}) || bytes.Contains(line, []byte{0xc2, 0x85}) {
			t.Fatalf("raw C1 in %q", line)
		}
	})
}

func TestFileSinkRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit", "audit.jsonl")
	s, err := NewFileSink(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 39) + "\n") // 40 bytes: two fit in 100, the third rotates
	for i := 0; i < 7; i++ {
		if err := s.Write(context.Background(), line); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// 7 lines: files of 2, 2, 2, 1; the oldest pair is gone (max_files 2).
	for _, c := range []struct {
		name  string
		lines int
	}{{"audit.jsonl", 1}, {"audit.jsonl.1", 2}, {"audit.jsonl.2", 2}} {
		b, err := os.ReadFile(filepath.Join(dir, "audit", c.name))
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(b, []byte("\n")); n != c.lines {
			t.Errorf("%s has %d lines, want %d", c.name, n, c.lines)
		}
	}
	if _, err := os.Stat(path + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.3 exists: %v", path, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
}

func TestFileSinkUnwritable(t *testing.T) {
	// A path under a regular file fails even for root.
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	os.WriteFile(blocker, nil, 0o600)
	s, err := NewFileSink(filepath.Join(blocker, "audit.jsonl"), 0, 0)
	if err == nil {
		t.Fatal("opening under a regular file succeeded")
	}
	if err := s.Write(context.Background(), []byte("{}\n")); err == nil {
		t.Fatal("write succeeded")
	}
	// The path becomes writable: the sink recovers.
	os.Remove(blocker)
	if err := s.Write(context.Background(), []byte("{}\n")); err != nil {
		t.Fatalf("after the path became writable: %v", err)
	}
	s.Close()
}

func TestHealthAndDrops(t *testing.T) {
	m := &memSink{}
	var drops atomic.Int64
	o := fixedOptions()
	o.OnDrop = func(string) { drops.Add(1) }
	l := New(o, m)
	defer l.Close(context.Background())
	ok, failed := l.Health()
	if !ok {
		t.Fatal("unhealthy at start")
	}
	m.fail.Store(true)
	l.Emit(Event{Type: TypeExec})
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("failure not signalled")
	}
	if ok, _ := l.Health(); ok {
		t.Error("healthy after a failed write")
	}
	if l.Dropped() != 1 || drops.Load() != 1 {
		t.Errorf("dropped %d, OnDrop %d, want 1", l.Dropped(), drops.Load())
	}
	m.fail.Store(false)
	l.Emit(Event{Type: TypeExec})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ok, _ := l.Health(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("did not recover")
		}
		time.Sleep(5 * time.Millisecond) // bounded poll
	}
}

func TestEmitNeverBlocks(t *testing.T) {
	m := &memSink{block: make(chan struct{})}
	o := fixedOptions()
	o.QueueSize = 2
	l := New(o, m)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 100; i++ {
			l.Emit(Event{Type: TypeExec})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Emit blocked on a stuck sink")
	}
	if d := l.Dropped(); d < 97 {
		t.Errorf("dropped %d, want at least 97", d)
	}
	close(m.block)
	l.Close(context.Background())
}

func TestWebhookRetries(t *testing.T) {
	var calls atomic.Int32
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		b := new(bytes.Buffer)
		b.ReadFrom(r.Body)
		body.Store(b.String())
		if r.Header.Get("Authorization") != "Bearer t" || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	s := &WebhookSink{URL: srv.URL, Retries: 3, Backoff: time.Millisecond, Header: http.Header{"Authorization": {"Bearer t"}}}
	if err := s.Write(context.Background(), []byte(`{"type":"exec"}`+"\n")); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || body.Load() != `{"type":"exec"}` {
		t.Errorf("calls %d body %v", calls.Load(), body.Load())
	}
	// An unreachable URL: the error does not repeat the URL (it may hold a token).
	dead := &WebhookSink{URL: "http://127.0.0.1:1/hook?token=SECRET", Backoff: time.Millisecond}
	if err := dead.Write(context.Background(), []byte("{}\n")); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("unreachable webhook: %v", err)
	}
	s.Retries = 1
	calls.Store(-10)
	if err := s.Write(context.Background(), []byte("{}\n")); err == nil {
		t.Error("a failing webhook reported success")
	}
}

// Emit racing Close neither panics nor blocks; what comes after Close is dropped.
func TestEmitDuringClose(t *testing.T) {
	m := &memSink{}
	l := New(fixedOptions(), m)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			l.Emit(Event{Type: TypeExec})
		}
	}()
	l.Close(context.Background())
	<-done
	if got := uint64(strings.Count(m.text(), "\n")) + l.Dropped(); got != 1000 {
		t.Errorf("written + dropped = %d, want 1000", got)
	}
}

func TestFileSinkMaxAge(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	now := time.Now()
	// Rotated files from before: .1 recent, .2 old.
	os.WriteFile(path+".1", []byte("recent\n"), 0o600)
	os.WriteFile(path+".2", []byte("old\n"), 0o600)
	os.Chtimes(path+".1", now.Add(-2*time.Hour), now.Add(-2*time.Hour))
	os.Chtimes(path+".2", now.Add(-50*time.Hour), now.Add(-50*time.Hour))
	s, err := NewFileSink(path, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetMaxAge(24 * time.Hour)
	if err := s.Write(context.Background(), []byte("live\n")); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(now)
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want the old rotated file", n, err)
	}
	if _, err := os.Stat(path + ".2"); !os.IsNotExist(err) {
		t.Errorf(".2 kept: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "live\n" {
		t.Errorf("live file %q", b)
	}
	// A day later the live file itself is past the bound: it is rotated,
	// and what it held leaves a day after that.
	s.mu.Lock()
	s.since = now.Add(-25 * time.Hour)
	s.mu.Unlock()
	if _, err = s.Prune(now); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path + ".1"); string(b) != "live\n" {
		t.Errorf("after the age rotation .1 holds %q", b)
	}
	if b, err := os.ReadFile(path); err != nil || len(b) != 0 {
		t.Errorf("live file after rotation: %q %v", b, err)
	}
	if err := s.Write(context.Background(), []byte("next\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "next\n" {
		t.Errorf("writes after rotation go to %q", b)
	}
}
