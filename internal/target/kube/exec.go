package kube

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// executor makes the exec stream of cmd in the pod's main container:
// WebSocket (the API server's current protocol), SPDY when the upgrade
// fails (older servers, some proxies), unless wsOnly (the early attempts of
// earlyExec, which read the upgrade's failure).
func (e *Engine) executor(ns, name string, cmd []string, stdin, wsOnly bool) (remotecommand.Executor, error) {
	if e.rest == nil {
		return nil, errors.New("no REST config for exec")
	}
	req := e.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: mainContainer, Command: cmd, Stdin: stdin, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(e.rest, "GET", req.URL().String())
	if err != nil {
		return nil, fmt.Errorf("websocket executor: %w", err)
	}
	if wsOnly {
		return ws, nil
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.rest, "POST", req.URL())
	if err != nil {
		return nil, fmt.Errorf("spdy executor: %w", err)
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

// Exec runs a command in the main container, as the container's user (an
// exec cannot pick another: the lifecycle always asks for that one) with
// the container's environment (x.Env is the same). Attached, its stdin and
// stdout are the returned Conn; its stderr goes to the debug log. The
// agent's --stdio in a keeper pod is a stream over the pod's long-lived
// one instead, when it can be (mux.go).
func (e *Engine) Exec(ctx context.Context, r lifecycle.Ref, x lifecycle.ExecRequest) (*lifecycle.Process, error) {
	if x.Attach && isAgentStdio(x.Cmd) {
		if c := e.muxConn(ctx, r, x.Cmd); c != nil {
			return &lifecycle.Process{Conn: c}, nil
		}
	}
	e.log.Debug("pod exec", "pod", r.Name, "mode", execMode(x))
	if ps := e.takePending(r.ID); ps != nil {
		if x.Attach {
			return e.earlyExec(ctx, r, x, ps)
		}
		if err := ps.wait(ctx, r); err != nil {
			return nil, err
		}
	}
	return e.exec(ctx, r, x)
}

func execMode(x lifecycle.ExecRequest) string {
	switch {
	case isAgentStdio(x.Cmd):
		return "stdio"
	case x.Attach:
		return "attached"
	}
	return "detached"
}

func (e *Engine) exec(ctx context.Context, r lifecycle.Ref, x lifecycle.ExecRequest) (*lifecycle.Process, error) {
	ns, name, ok := splitID(r.ID)
	if !ok {
		return nil, lifecycle.Failed(r.Target, fmt.Errorf("pod id %q", r.ID), "the gate could not prepare it")
	}
	ex, err := e.executor(ns, name, x.Cmd, x.Attach, false)
	if err != nil {
		return nil, lifecycle.Failed(r.Target, err, "the gate could not prepare it")
	}
	if !x.Attach {
		stderr := &logWriter{log: e.log, pod: r.Name}
		var mu sync.Mutex
		done, code := false, 0
		go func() {
			err := ex.StreamWithContext(e.bg, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: stderr})
			c := exitCode(err)
			if err != nil && c == 0 {
				e.log.Warn("detached exec", "pod", r.Name, "err", err)
				c = 126
			}
			mu.Lock()
			done, code = true, c
			mu.Unlock()
		}()
		return &lifecycle.Process{Exited: func(context.Context) (bool, int, error) {
			mu.Lock()
			defer mu.Unlock()
			return done, code, nil
		}}, nil
	}
	p, cause := e.stream(ctx, r, ex)
	if cause == nil {
		return p, nil
	}
	if ctx.Err() != nil {
		return nil, apiError(r.Target, ns, "exec in "+r.Name, ctx.Err())
	}
	if pe := execError(r.Target, ns, r.Name, cause); pe != nil {
		return nil, pe
	}
	return nil, lifecycle.Failed(r.Target, fmt.Errorf("exec in %s: %w", r.Name, cause), "its agent did not answer")
}

// stream runs ex attached and waits, at most FirstByteTimeout, for its
// first output byte: the stream as a Conn, or why it failed (the stream's
// own error when it ended, else the wait's).
func (e *Engine) stream(ctx context.Context, r lifecycle.Ref, ex remotecommand.Executor) (*lifecycle.Process, error) {
	stderr := &logWriter{log: e.log, pod: r.Name}
	mine, theirs := net.Pipe()
	sctx, cancel := context.WithCancel(e.bg)
	stop := context.AfterFunc(ctx, cancel) // until the stream is up, the caller may cancel it
	failed := make(chan error, 1)
	go func() {
		err := ex.StreamWithContext(sctx, remotecommand.StreamOptions{Stdin: theirs, Stdout: theirs, Stderr: stderr})
		failed <- err
		theirs.Close()
	}()
	c := &execConn{Conn: mine, cancel: cancel}
	c.br = bufio.NewReaderSize(mine, 64<<10)
	mine.SetReadDeadline(time.Now().Add(e.cfg.FirstByteTimeout))
	_, perr := c.br.Peek(1)
	mine.SetReadDeadline(time.Time{})
	if perr != nil {
		stop()
		cancel()
		c.Close()
		var cause error
		select {
		case cause = <-failed:
		case <-time.After(time.Second):
		}
		if cause == nil {
			cause = perr
		}
		return nil, cause
	}
	stop()
	e.log.Debug("exec stream open", "pod", r.Name, "since_create_ms", e.since(r.ID).Milliseconds())
	return &lifecycle.Process{Conn: c}, nil
}

// execError classifies a failed exec stream: a refusal from the API server
// is named; anything else is left to the caller (nil).
func execError(t, ns, pod string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(utilexec.CodeExitError); ok {
		return nil
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "forbidden"):
		return lifecycle.Failed(t, fmt.Errorf("exec in %s: %w", pod, err), "the gate may not exec in pods of namespace %q", ns)
	case strings.Contains(msg, "not found"):
		return lifecycle.Failed(t, fmt.Errorf("exec in %s: %w", pod, err), "it was removed")
	}
	return nil
}

func exitCode(err error) int {
	var ce utilexec.CodeExitError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// execConn is an exec stream as a net.Conn: Read gives the agent's stdout
// (through the reader that saw its first byte), Write feeds its stdin,
// Close ends the stream.
type execConn struct {
	net.Conn
	br     *bufio.Reader
	cancel context.CancelFunc
	once   sync.Once
}

func (c *execConn) Read(p []byte) (int, error) { return c.br.Read(p) }

func (c *execConn) Close() error {
	c.once.Do(func() {
		c.cancel()
		c.Conn.Close()
	})
	return nil
}

// logWriter logs an exec's stderr at debug level, a line at a time.
type logWriter struct {
	log *slog.Logger
	pod string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.log.Debug("agent stderr", "pod", w.pod, "text", strings.TrimSpace(strings.ToValidUTF8(string(p[:min(len(p), 4096)]), "?")))
	return len(p), nil
}
