package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// FileSink appends lines to a file and rotates it by size: when a line
// would take the file past MaxSize, audit.jsonl becomes audit.jsonl.1, .1
// becomes .2, and so on; the file past MaxFiles is removed.
type FileSink struct {
	path     string
	maxSize  int64
	maxFiles int
	maxAge   time.Duration // see SetMaxAge

	mu    sync.Mutex
	f     *os.File
	size  int64
	since time.Time // when the live file was opened or rotated
}

// SetMaxAge bounds how long events are kept: the live file is rotated once
// it is older than d (by Write or Prune), and Prune removes rotated files
// last written more than d ago, so an event is gone between d and 2d after
// it was written. 0 keeps files until max_files pushes them out. Call it
// before the sink is used.
func (s *FileSink) SetMaxAge(d time.Duration) { s.maxAge = d }

// Prune applies the age bound at now: it rotates a live file older than
// the bound and removes rotated files older than it. It returns how many
// files it removed.
func (s *FileSink) Prune(now time.Time) (int, error) {
	if s.maxAge <= 0 {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil && s.size > 0 && now.Sub(s.since) > s.maxAge {
		if err := s.rotate(); err != nil {
			return 0, err
		}
	}
	n := 0
	var errs []error
	for i := 1; s.maxFiles <= 0 || i <= s.maxFiles; i++ {
		p := s.path + "." + strconv.Itoa(i)
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			if s.maxFiles <= 0 {
				break
			}
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if now.Sub(st.ModTime()) > s.maxAge {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			n++
		}
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("prune audit files: %w", errors.Join(errs...))
	}
	return n, nil
}

// NewFileSink returns a sink writing to path (its directory is created, mode
// 0700; files are 0600). maxSize <= 0 disables rotation; maxFiles is how many
// rotated files are kept besides the live one. The sink is returned even
// when the file cannot be opened now (the error says why): it tries again on
// every write, and fails those writes meanwhile.
func NewFileSink(path string, maxSize int64, maxFiles int) (*FileSink, error) {
	s := &FileSink{path: path, maxSize: maxSize, maxFiles: maxFiles}
	return s, s.open()
}

func (s *FileSink) Name() string { return "file" }

func (s *FileSink) open() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("open audit file: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open audit file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("open audit file: %w", err)
	}
	s.f, s.size, s.since = f, st.Size(), time.Now()
	return nil
}

// Write appends line, rotating first if it would not fit. A file that could
// not be opened (unwritable directory, full disk) is retried on every write.
func (s *FileSink) Write(_ context.Context, line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tooOld := s.maxAge > 0 && time.Since(s.since) > s.maxAge
	if s.f != nil && s.size > 0 && (tooOld || s.maxSize > 0 && s.size+int64(len(line)) > s.maxSize) {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	n, err := s.f.Write(line)
	s.size += int64(n)
	if err != nil {
		// Reopen next time: the file may have been removed or the disk freed.
		_ = s.f.Close()
		s.f = nil
		return fmt.Errorf("write audit file: %w", err)
	}
	return nil
}

func (s *FileSink) rotate() error {
	_ = s.f.Close()
	s.f = nil
	if s.maxFiles <= 0 {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate audit file: %w", err)
		}
		return s.open()
	}
	_ = os.Remove(s.path + "." + strconv.Itoa(s.maxFiles))
	for i := s.maxFiles - 1; i >= 1; i-- {
		old := s.path + "." + strconv.Itoa(i)
		if err := os.Rename(old, s.path+"."+strconv.Itoa(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate audit file: %w", err)
		}
	}
	if err := os.Rename(s.path, s.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rotate audit file: %w", err)
	}
	return s.open()
}

func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("close audit file: %w", err)
	}
	return nil
}

// WriterSink writes lines to an io.Writer (stdout).
type WriterSink struct {
	name string
	w    io.Writer
}

// NewWriterSink returns a sink named name writing to w.
func NewWriterSink(name string, w io.Writer) *WriterSink { return &WriterSink{name: name, w: w} }

func (s *WriterSink) Name() string { return s.name }

func (s *WriterSink) Write(_ context.Context, line []byte) error {
	if _, err := s.w.Write(line); err != nil {
		return fmt.Errorf("write audit %s: %w", s.name, err)
	}
	return nil
}

func (s *WriterSink) Close() error { return nil }

// WebhookSink POSTs each event (one JSON object, Content-Type
// application/json) to a URL, retrying failures with a doubling backoff. A
// 2xx answer is success; anything else, or no answer within Timeout, is a
// failure.
type WebhookSink struct {
	URL     string
	Header  http.Header // e.g. Authorization, read from a file by the caller
	Retries int         // attempts after the first
	Backoff time.Duration
	Timeout time.Duration
	Client  *http.Client
}

func (s *WebhookSink) Name() string { return "webhook" }

func (s *WebhookSink) Write(ctx context.Context, line []byte) error {
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	backoff := s.Backoff
	if backoff <= 0 {
		backoff = 200 * time.Millisecond
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	var last error
	for attempt := 0; attempt <= s.Retries; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("post audit webhook: %w", ctx.Err())
			case <-t.C:
			}
			backoff = min(2*backoff, 30*time.Second)
		}
		if last = s.post(ctx, client, timeout, line); last == nil {
			return nil
		}
	}
	return last
}

func (s *WebhookSink) post(ctx context.Context, client *http.Client, timeout time.Duration, line []byte) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(bytes.TrimRight(line, "\n")))
	if err != nil {
		return fmt.Errorf("post audit webhook: %w", err)
	}
	for k, v := range s.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		// Not the *url.Error itself: its text holds the URL, which may carry a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post audit webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post audit webhook: status %d", resp.StatusCode)
	}
	return nil
}

func (s *WebhookSink) Close() error { return nil }
