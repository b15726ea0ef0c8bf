package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/audit/recording"
	"github.com/sshgate/sshgate/internal/broker"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/live"
	"github.com/sshgate/sshgate/internal/obs"
	"github.com/sshgate/sshgate/internal/sshd"
	"github.com/sshgate/sshgate/internal/store"
)

// observability is the gate's metrics and health listener, its session
// recordings and its live session registry.
type observability struct {
	cfg     config.Config
	log     *slog.Logger
	st      store.Store
	metrics *obs.Metrics
	rec     *recording.Dir // nil: recordings off, or the directory failed
	recErr  error          // why rec is nil while recordings are on
	live    *live.Registry
	pwlog   *recording.PasswordLog       // honeypot mode
	audit   atomic.Pointer[audit.Logger] // for sshgate_audit_dropped_total

	stopPrune func() // recordings retention
	listening atomic.Bool
	http      *http.Server
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// startObs makes the metrics, opens the recordings directory and starts the
// live session registry (clearing this gate's stale rows).
func startObs(ctx context.Context, cfg config.Config, dir *datadir.Dir, st store.Store, gateID string, log *slog.Logger) (*observability, error) {
	o := &observability{cfg: cfg, log: log, st: st}
	o.metrics = obs.NewMetrics(func() float64 { return float64(o.audit.Load().Dropped()) })
	if cfg.Recordings.Enabled {
		path := cfg.Recordings.Dir
		switch {
		case path == "":
			path = dir.RecordingsDir()
		case !filepath.IsAbs(path):
			path = filepath.Join(dir.Path, path)
		}
		o.rec, o.recErr = recording.OpenDir(path)
		if o.recErr != nil {
			// Each PTY session then follows recordings.on_error.
			log.Error("session recordings cannot be written", "dir", path, "on_error", cfg.Recordings.OnError, "err", o.recErr)
		}
	}
	if o.rec != nil && cfg.Recordings.HoneypotPasswords {
		pl, err := o.rec.OpenPasswordLog(func(err error) { log.Warn("honeypot password log", "err", err) })
		if err != nil {
			return nil, err
		}
		o.pwlog = pl
		log.Warn("honeypot mode: failed password attempts are recorded, passwords included", "file", filepath.Join(o.rec.Path(), recording.PasswordsFile))
	}
	if o.rec != nil {
		keep := recording.Retention{MaxAge: cfg.Recordings.MaxAge.D(), MaxTotal: int64(cfg.Recordings.MaxTotal)}
		if keep.MaxAge > 0 || keep.MaxTotal > 0 {
			rec := o.rec
			o.stopPrune = every(retentionInterval, func() {
				res, err := rec.Prune(time.Now(), keep)
				if err != nil {
					log.Warn("recordings retention", "err", err)
				}
				if res.Removed > 0 {
					log.Info("recordings removed by retention", "files", res.Removed, "bytes", res.Freed,
						"max_age", keep.MaxAge, "max_total", keep.MaxTotal)
				}
			})
		}
	}
	reg, err := live.New(ctx, st, gateID, log, live.Options{})
	if err != nil {
		return nil, fmt.Errorf("start live session registry: %w", err)
	}
	o.live = reg
	rctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	o.wg.Add(1)
	go func() { defer o.wg.Done(); reg.Run(rctx) }()
	return o, nil
}

// auditDropped makes sshgate_audit_dropped_total read the audit logger's
// drop count (events a failing sink lost under fail-open).
func (o *observability) auditDropped(l *audit.Logger) { o.audit.Store(l) }

// containerStarted is the docker backend's start hook.
func (o *observability) containerStarted(err error) { o.metrics.ContainerStarted(err) }

// honeypot wraps the password callback to record failed attempts, in
// honeypot mode; else it returns pw as is.
func (o *observability) honeypot(pw func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error)) func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) {
	if o.pwlog == nil || pw == nil {
		return pw
	}
	return func(conn ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
		perms, err := pw(conn, password)
		// A PartialSuccessError is a right password awaiting a second
		// factor: never written.
		var partial *ssh.PartialSuccessError
		if err != nil && !errors.As(err, &partial) {
			o.pwlog.Record(recording.PasswordAttempt{Time: time.Now().UTC(), User: conn.User(),
				Remote: conn.RemoteAddr().String(), Client: string(conn.ClientVersion()), Password: string(password)})
		}
		return perms, err
	}
}

// brokerObservers are what watches the broker's sessions.
func (o *observability) brokerObservers() broker.Observers {
	bo := broker.Observers{
		Metrics: o.metrics,
		Live:    o.live,
		// One per-target setting governs both records of a session: a target
		// that is fail-closed for its audit events is for its recordings too.
		FailClosed: func(target string) bool {
			return o.cfg.Recordings.OnError == config.FailClosed || o.cfg.Audit.FailClosed(target)
		},
	}
	if o.cfg.Recordings.Enabled {
		bo.Recorder = recorder{o}
	}
	return bo
}

// listen starts the metrics and health listener if configured.
func (o *observability) listen(srv *sshd.Server) error {
	if o.cfg.Metrics.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", o.cfg.Metrics.Listen)
	if err != nil {
		return fmt.Errorf("metrics listen on %s: %w", o.cfg.Metrics.Listen, err)
	}
	h := obs.Handler(o.metrics, obs.Health{
		Ping:      o.st.Ping,
		Listening: o.listening.Load,
		Draining:  srv.Draining,
		OnFail: func(check string, err error) {
			if err != nil {
				o.log.Warn("not ready", "check", check, "err", err)
			}
		},
	})
	o.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelWarn)}
	o.log.Info("metrics and health listening", "addr", ln.Addr().String())
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		if err := o.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.log.Error("metrics listener stopped", "err", err)
		}
	}()
	return nil
}

// ready marks the SSH listener as accepting.
func (o *observability) ready() { o.listening.Store(true) }

// close stops the listener and the registry. It runs after the SSH server
// has drained, so /readyz answers "draining" throughout the drain.
func (o *observability) close() {
	if o.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = o.http.Shutdown(ctx)
		cancel()
	}
	o.cancel()
	o.wg.Wait()
	if o.pwlog != nil {
		_ = o.pwlog.Close()
	}
	if o.stopPrune != nil {
		o.stopPrune()
	}
	if o.rec != nil {
		_ = o.rec.Close()
	}
}

// recorder is the broker's Recorder on the recordings directory.
type recorder struct{ o *observability }

func (r recorder) Record(id string, cols, rows uint32, term string, onError func(error)) (broker.Recording, error) {
	if r.o.rec == nil {
		return nil, fmt.Errorf("recordings directory: %w", r.o.recErr)
	}
	h := recording.Header{Width: int(min(max(cols, 1), 10000)), Height: int(min(max(rows, 1), 10000))}
	if term != "" {
		h.Env = map[string]string{"TERM": term}
	}
	rec, err := r.o.rec.Create(id, h, recording.Options{Input: r.o.cfg.Recordings.Input, OnError: onError})
	if err != nil {
		return nil, err
	}
	return rec, nil
}
