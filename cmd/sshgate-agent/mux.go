package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/sshgate/sshgate/internal/agent"
	"github.com/sshgate/sshgate/internal/muxproto"
)

// serveMux is --mux: the long-lived exec stream of a keeper pod. It writes
// muxproto.Preamble on conn (stdout), then serves a yamux session on it in
// which the gate opens one stream per SSH connection; each stream is served
// like --stdio's one connection. The agent opens no stream and never reads
// anything but what the gate sends. It returns when the session ends (the
// gate closed the exec stream, or it broke) or on SIGTERM, after telling
// the sessions still running to stop.
func serveMux(ctx context.Context, srv *agent.Server, conn io.ReadWriteCloser, log *slog.Logger) int {
	if _, err := io.WriteString(conn, muxproto.Preamble); err != nil {
		log.Warn("mux preamble", "err", err)
		return 1
	}
	sess, err := yamux.Server(conn, muxproto.Config())
	if err != nil {
		log.Warn("mux session", "err", err)
		return 1
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	var wg sync.WaitGroup
	slots := make(chan struct{}, muxproto.MaxStreams)
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			break
		}
		select {
		case slots <- struct{}{}:
		default:
			// The gate keeps within MaxStreams; a stream beyond it is refused.
			st.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := srv.Serve(st); err != nil && ctx.Err() == nil {
				log.Info("connection ended", "err", err)
			}
		}()
	}
	sess.Close()
	srv.Shutdown(500 * time.Millisecond)
	wg.Wait()
	return 0
}
