package recording

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/relay"
)

// fakeClock advances 0.5 s per call.
func fakeClock() func() time.Time {
	var mu sync.Mutex
	t := time.Unix(1700000000, 0)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now := t
		t = t.Add(500 * time.Millisecond)
		return now
	}
}

func TestRecordAndReadBack(t *testing.T) {
	d, err := OpenDir(filepath.Join(t.TempDir(), "rec"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, err := d.Create("abc123", Header{Width: 80, Height: 24, Env: map[string]string{"TERM": "xterm"}}, Options{Now: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	euro := []byte("€") // 3 bytes, split across two chunks
	r.Data(relay.ToUser, append([]byte("price: "), euro[:1]...))
	r.Data(relay.ToUser, append(euro[1:], '\n'))
	r.Data(relay.ToTarget, []byte("secret\r")) // input: not recorded by default
	r.Resize(100, 40)
	r.Data(relay.ToUserStderr, []byte("err <&> \x1b[1m\xff"))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(d.Path(), "abc123.cast"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st, _ := f.Stat(); st.Mode().Perm() != 0o600 {
		t.Errorf("recording mode %v, want 0600", st.Mode().Perm())
	}
	h, evs, err := ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 2 || h.Width != 80 || h.Height != 24 || h.Env["TERM"] != "xterm" || h.Timestamp != 1700000000 {
		t.Errorf("header %+v", h)
	}
	want := []Event{
		{0.5, "o", "price: "},
		{1, "o", "€\n"},
		{1.5, "r", "100x40"},
		{2, "o", "err <&> \x1b[1m\uFFFD"},
	}
	if len(evs) != len(want) {
		t.Fatalf("events %+v, want %+v", evs, want)
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, evs[i], want[i])
		}
	}
	// A second recording with the same id is refused, not overwritten.
	if _, err := d.Create("abc123", Header{Width: 1, Height: 1}, Options{}); err == nil {
		t.Error("Create over an existing recording succeeded")
	}
}

func TestInputRecordedWhenAsked(t *testing.T) {
	var buf bytes.Buffer
	r, err := New(nopCloser{&buf}, Header{Width: 10, Height: 5}, Options{Input: true, Now: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	r.Data(relay.ToTarget, []byte("ls\r"))
	r.Close()
	_, evs, err := ReadAll(&buf)
	if err != nil || len(evs) != 1 || evs[0].Type != "i" || evs[0].Data != "ls\r" {
		t.Fatalf("events %+v, %v", evs, err)
	}
}

func TestCreateRefusesEscapingNames(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDir(filepath.Join(dir, "rec"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, id := range []string{"", "../x", "a/b", ".", "..", "x y", strings.Repeat("a", 65)} {
		if r, err := d.Create(id, Header{Width: 1, Height: 1}, Options{}); err == nil {
			r.Close()
			t.Errorf("Create(%q) succeeded", id)
		}
	}
	// A symlink planted in the directory does not lead out of it.
	outside := filepath.Join(dir, "outside.cast")
	if err := os.Symlink(outside, filepath.Join(dir, "rec", "evil.cast")); err != nil {
		t.Fatal(err)
	}
	if r, err := d.Create("evil", Header{Width: 1, Height: 1}, Options{}); err == nil {
		r.Close()
		t.Error("Create through a symlink succeeded")
	}
	if _, err := os.Stat(outside); err == nil {
		t.Error("a file was created outside the recordings directory")
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n--; f.n < 0 {
		return 0, errors.New("no space left on device")
	}
	return len(p), nil
}
func (f *failWriter) Close() error { return nil }

func TestWriteErrorReportedOnce(t *testing.T) {
	errs := make(chan error, 10)
	r, err := New(&failWriter{n: 1}, Header{Width: 1, Height: 1}, Options{OnError: func(err error) { errs <- err }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		r.Data(relay.ToUser, []byte("output\n"))
	}
	r.Close()
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "no space left") {
			t.Errorf("OnError(%v)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnError not called")
	}
	if !r.Failed() {
		t.Error("Failed() = false")
	}
	select {
	case err := <-errs:
		t.Errorf("OnError called twice: %v", err)
	default:
	}
}

// blockWriter blocks until released: a stuck disk.
type blockWriter struct{ release chan struct{} }

func (b *blockWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }
func (b *blockWriter) Close() error                { return nil }

func TestSlowDiskNeverBlocksTheRelay(t *testing.T) {
	bw := &blockWriter{release: make(chan struct{})}
	errs := make(chan error, 1)
	// The header write goes through: release it once.
	go func() { bw.release <- struct{}{} }()
	r, err := New(bw, Header{Width: 1, Height: 1}, Options{MaxPending: 1 << 16, OnError: func(err error) { errs <- err }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		chunk := bytes.Repeat([]byte("x"), 4096)
		for i := 0; i < 1000; i++ { // 4 MB against a 64 KiB bound
			r.Data(relay.ToUser, chunk)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Data blocked on a stuck writer")
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "fell behind") {
			t.Errorf("OnError(%v)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnError not called")
	}
	close(bw.release)
	r.Close()
}

func TestSplitUTF8(t *testing.T) {
	for _, tc := range []struct{ in, whole, rest string }{
		{"abc", "abc", ""},
		{"a\xe2\x82", "a", "\xe2\x82"},
		{"a\xe2", "a", "\xe2"},
		{"a€", "a€", ""},
		{"\xf0\x9f\x98", "", "\xf0\x9f\x98"},
		{"\xff", "\xff", ""},
		{"a\x82", "a\x82", ""},
		{"", "", ""},
	} {
		w, r := splitUTF8([]byte(tc.in))
		if string(w) != tc.whole || string(r) != tc.rest {
			t.Errorf("splitUTF8(%q) = %q, %q; want %q, %q", tc.in, w, r, tc.whole, tc.rest)
		}
	}
}

// The relay's input copier may still run when the session closes the
// recording: Data racing Close must neither race nor panic.
func TestDataDuringClose(t *testing.T) {
	var buf bytes.Buffer
	r, err := New(nopCloser{&buf}, Header{Width: 1, Height: 1}, Options{Input: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			r.Data(relay.ToTarget, []byte("a\xe2"))
		}
	}()
	r.Close()
	<-done
	r.Data(relay.ToUser, []byte("late"))
	r.Resize(1, 1)
}

func TestPasswordLog(t *testing.T) {
	d, err := OpenDir(filepath.Join(t.TempDir(), "rec"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l, err := d.OpenPasswordLog(nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Record(PasswordAttempt{User: "root", Remote: "192.0.2.1:5000", Password: "hunter2\x1b]52;c;x\x07\u009b\x7f"})
	l.Close()
	l.Record(PasswordAttempt{User: "late"}) // after Close: dropped, no panic
	data, err := os.ReadFile(filepath.Join(d.Path(), PasswordsFile))
	if err != nil {
		t.Fatal(err)
	}
	line := string(data)
	if !strings.Contains(line, `"password":"hunter2\u001b]52;c;x\u0007\u009b\u007f"`) || strings.Count(line, "\n") != 1 {
		t.Errorf("log line %q", line)
	}
	for _, c := range line {
		if c < 0x20 && c != '\n' || c >= 0x7f && c <= 0x9f {
			t.Errorf("raw control %U in %q", c, line)
		}
	}
}
