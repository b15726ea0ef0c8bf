package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/auth"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/gate"
)

// startAudit builds the audit logger from the configuration, records
// authentication failures through sc's AuthLogCallback and makes the broker
// record sessions. The returned function flushes and closes the sinks.
//
// A sink that cannot be opened (an unwritable directory) does not stop the
// gate: it is logged, counts as failing, and fail-closed targets refuse
// sessions until it recovers.
func startAudit(cfg config.Config, dataDir, gateID string, log *slog.Logger) (*audit.Logger, func(), error) {
	a := cfg.Audit
	var sinks []audit.Sink
	stopPrune := func() {}
	var openErrs []error
	if a.File.Enabled {
		p := a.File.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(dataDir, p)
		}
		fs, err := audit.NewFileSink(p, int64(a.File.MaxSize), a.File.MaxFiles)
		if err != nil {
			log.Error("audit file unavailable; retrying on every event", "path", p, "err", err)
			openErrs = append(openErrs, err)
		}
		if age := a.File.MaxAge.D(); age > 0 {
			fs.SetMaxAge(age)
			stopPrune = every(retentionInterval, func() {
				if n, err := fs.Prune(time.Now()); err != nil {
					log.Warn("audit file retention", "err", err)
				} else if n > 0 {
					log.Info("audit files removed by retention", "files", n, "max_age", age)
				}
			})
		}
		sinks = append(sinks, fs)
	}
	if a.Stdout {
		sinks = append(sinks, audit.NewWriterSink("stdout", os.Stdout))
	}
	if a.Webhook.URL != "" {
		wh := &audit.WebhookSink{URL: a.Webhook.URL, Retries: a.Webhook.Retries, Backoff: a.Webhook.Backoff.D(),
			Timeout: a.Webhook.Timeout.D(), Client: &http.Client{}}
		if a.Webhook.TokenFile != "" {
			tok, err := os.ReadFile(a.Webhook.TokenFile)
			if err != nil {
				return nil, nil, fmt.Errorf("read audit.webhook.token_file: %w", err)
			}
			wh.Header = http.Header{"Authorization": {"Bearer " + strings.TrimSpace(string(tok))}}
		}
		sinks = append(sinks, wh)
	}
	l := audit.New(audit.Options{GateID: gateID, QueueSize: a.QueueSize, Log: log.With("component", "audit")}, sinks...)
	if len(openErrs) > 0 {
		// Known failing from the start: fail-closed targets refuse at once,
		// before an event has been tried.
		l.MarkFailing("file", errors.Join(openErrs...))
	}
	return l, func() {
		stopPrune()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			log.Warn("close audit sinks", "err", err)
		}
	}, nil
}

// auditAuthFailure records every failed authentication attempt (x/crypto
// reports each one, with its method; "none", the probe every client starts
// with, is left out).
func auditAuthFailure(l *audit.Logger) func(ssh.ConnMetadata, string, error) {
	return func(conn ssh.ConnMetadata, method string, err error) {
		if err == nil || method == "none" {
			return
		}
		user := conn.User()
		if len(user) > 256 {
			user = user[:256]
		}
		l.Emit(audit.Event{Type: audit.TypeAuthFailure, ConnID: gate.ConnIDOf(conn), ClientAddr: conn.RemoteAddr().String(), User: user,
			AuthMethod: method, Reason: authReason(err)})
	}
}

func authReason(err error) string {
	var ps *ssh.PartialSuccessError
	switch {
	case errors.As(err, &ps):
		return "partial_success"
	case errors.Is(err, auth.ErrDenied):
		return "denied"
	default:
		return "error"
	}
}
