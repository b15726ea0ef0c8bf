package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Sink receives encoded events, one JSON line at a time, from a single
// goroutine. Write returns an error when the line could not be kept (after
// the sink's own retries); the Logger then counts the sink as failing until a
// later Write succeeds.
type Sink interface {
	Name() string // short and fixed ("file", "stdout", "webhook"): a metric label
	Write(ctx context.Context, line []byte) error
	Close() error
}

// Options tune a Logger. The zero value is usable.
type Options struct {
	GateID    string
	QueueSize int                          // events queued per sink before dropping (default 4096)
	Now       func() time.Time             // default time.Now; fixed in golden tests
	NewID     func() string                // event ids; default 16 random hex digits
	Log       *slog.Logger                 // where sink failures are logged (never event contents)
	OnDrop    func(sink string)            // called for each event a sink lost (queue full or write failed)
	OnFailure func(sink string, err error) // called when a sink starts failing
}

// Logger stamps events and fans them out to sinks without blocking.
type Logger struct {
	opts    Options
	workers []*worker
	dropped atomic.Uint64
	seq     atomic.Uint64

	mu      sync.Mutex
	failing map[string]bool
	failCh  chan struct{} // closed when the logger turns unhealthy

	qmu    sync.RWMutex
	closed bool
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

type worker struct {
	sink Sink
	q    chan []byte
}

// New starts a Logger writing to sinks. Close stops it.
func New(opts Options, sinks ...Sink) *Logger {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NewID == nil {
		opts.NewID = randomID
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Logger{opts: opts, failing: map[string]bool{}, failCh: make(chan struct{}), cancel: cancel}
	for _, s := range sinks {
		w := &worker{sink: s, q: make(chan []byte, opts.QueueSize)}
		l.workers = append(l.workers, w)
		l.wg.Add(1)
		go l.run(ctx, w)
	}
	return l
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Emit records e. It never blocks: a sink whose queue is full loses the
// event, which is counted (Dropped) and makes that sink failing.
func (l *Logger) Emit(e Event) {
	if l == nil {
		return
	}
	e.Time = l.opts.Now()
	e.ID = l.opts.NewID()
	if e.GateID == "" {
		e.GateID = l.opts.GateID
	}
	line, err := Encode(&e)
	if err != nil {
		l.opts.Log.Error("audit event not encoded", "type", e.Type, "err", err)
		return
	}
	l.qmu.RLock() // held while sending: Close closes the queues under the write lock
	defer l.qmu.RUnlock()
	for _, w := range l.workers {
		if l.closed {
			l.drop(w.sink.Name(), errors.New("audit logger closed"))
			continue
		}
		select {
		case w.q <- line:
		default:
			l.drop(w.sink.Name(), errors.New("queue full"))
		}
	}
}

func (l *Logger) drop(sink string, why error) {
	l.dropped.Add(1)
	if l.opts.OnDrop != nil {
		l.opts.OnDrop(sink)
	}
	l.setFailing(sink, why)
}

func (l *Logger) run(ctx context.Context, w *worker) {
	defer l.wg.Done()
	for line := range w.q {
		if err := w.sink.Write(ctx, line); err != nil {
			l.drop(w.sink.Name(), err)
			continue
		}
		l.setHealthy(w.sink.Name())
	}
}

func (l *Logger) setFailing(sink string, err error) {
	l.mu.Lock()
	was := len(l.failing) > 0
	already := l.failing[sink]
	l.failing[sink] = true
	if !was {
		close(l.failCh)
	}
	l.mu.Unlock()
	if !already {
		l.opts.Log.Error("audit sink failing; events are being lost", "sink", sink, "err", err)
		if l.opts.OnFailure != nil {
			l.opts.OnFailure(sink, err)
		}
	}
}

func (l *Logger) setHealthy(sink string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.failing[sink] {
		return
	}
	delete(l.failing, sink)
	if len(l.failing) == 0 {
		l.failCh = make(chan struct{})
		l.opts.Log.Info("audit sink recovered", "sink", sink)
	}
}

// Health reports whether every sink keeps up, and a channel closed when the
// logger turns unhealthy (already closed if it is unhealthy now). A nil
// Logger is always healthy.
func (l *Logger) Health() (ok bool, failed <-chan struct{}) {
	if l == nil {
		return true, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.failing) == 0, l.failCh
}

// Dropped is the number of events lost so far, summed over sinks (for the
// metrics: sshgate_audit_dropped_events_total).
func (l *Logger) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Close stops accepting events, writes what is queued until ctx is done, and
// closes the sinks.
func (l *Logger) Close(ctx context.Context) error {
	l.qmu.Lock()
	if l.closed {
		l.qmu.Unlock()
		return nil
	}
	l.closed = true
	for _, w := range l.workers {
		close(w.q)
	}
	l.qmu.Unlock()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		l.cancel() // a webhook in its retries gives up; the rest of its queue is lost
		<-done
	}
	l.cancel()
	var errs []error
	for _, w := range l.workers {
		if err := w.sink.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MarkFailing records that sink is failing before any event was tried (a
// file that could not be opened at start). A later successful write clears it.
func (l *Logger) MarkFailing(sink string, err error) { l.setFailing(sink, err) }
