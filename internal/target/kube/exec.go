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

// executor makes the exec stream of cmd in the pod's main container: SPDY,
// WebSocket when the upgrade fails (a proxy that passes only WebSocket, a
// server without SPDY), or the other way round with
// kubernetes.exec_protocol: websocket. SPDY first because the API server
// passes a SPDY stream through to the kubelet as it is, where it
// translates a WebSocket one into SPDY message by message: 256 MiB into
// `wc -c` in a pod cost the API server 2.4 s per GiB over SPDY against
// 8.5 over WebSocket (e2e/bench -only kube, the same run), and on these 2
// cores the throughput is what the whole path's CPU allows. The early
// attempts of earlyExec use it too: the kubelet's "container not found"
// before the main container runs is a refusal of the exec, not of the
// protocol (upgradeFailed), so it comes back as it is over either.
func (e *Engine) executor(ns, name string, cmd []string, stdin bool) (*fallback, error) {
	if e.rest == nil {
		return nil, errors.New("no REST config for exec")
	}
	req := e.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: mainContainer, Command: cmd, Stdin: stdin, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(e.rest, "GET", req.URL().String())
	if err != nil {
		return nil, fmt.Errorf("websocket executor: %w", err)
	}
	spdy, err := spdyExecutor(e.rest, req.URL())
	if err != nil {
		return nil, fmt.Errorf("spdy executor: %w", err)
	}
	if e.cfg.WebSocket {
		return &fallback{first: ws, second: spdy, names: [2]string{"websocket", "spdy"}}, nil
	}
	return &fallback{first: spdy, second: ws, names: [2]string{"spdy", "websocket"}}, nil
}

// fallback streams over first, over second when first's upgrade fails,
// and tells which one it is on (for the debug log).
type fallback struct {
	first, second remotecommand.Executor
	names         [2]string
	mu            sync.Mutex
	using         string
}

func (f *fallback) StreamWithContext(ctx context.Context, o remotecommand.StreamOptions) error {
	f.set(f.names[0])
	err := f.first.StreamWithContext(ctx, o)
	if err == nil || !upgradeFailed(err) {
		return err
	}
	f.set(f.names[1])
	return f.second.StreamWithContext(ctx, o)
}

func (f *fallback) set(p string) {
	f.mu.Lock()
	f.using = p
	f.mu.Unlock()
}

// protocol is the protocol of the stream being tried or up.
func (f *fallback) protocol() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.using
}

// upgradeFailed: err is the API server (or a proxy before it) refusing
// the exec stream's protocol, not the exec itself (forbidden, no such pod),
// so that the other protocol may be tried. The WebSocket executor says so
// with a typed error; the SPDY one only in its message.
func upgradeFailed(err error) bool {
	if httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err) {
		return true
	}
	msg := strings.ToLower(err.Error())
	if !strings.HasPrefix(msg, "unable to upgrade connection") {
		return false
	}
	for _, refusal := range []string{"forbidden", "not found", "unauthorized"} {
		if strings.Contains(msg, refusal) {
			return false
		}
	}
	return true
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
	ex, err := e.executor(ns, name, x.Cmd, x.Attach)
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
func (e *Engine) stream(ctx context.Context, r lifecycle.Ref, ex *fallback) (*lifecycle.Process, error) {
	stderr := &logWriter{log: e.log, pod: r.Name}
	mine, theirs := net.Pipe() // stdout; stdin is the stdinPipe
	sctx, cancel := context.WithCancel(e.bg)
	stop := context.AfterFunc(ctx, cancel) // until the stream is up, the caller may cancel it
	failed := make(chan error, 1)
	in := newStdinPipe()
	go func() {
		err := ex.StreamWithContext(sctx, remotecommand.StreamOptions{Stdin: in, Stdout: theirs, Stderr: stderr})
		failed <- err
		theirs.Close()
		in.CloseRead()
	}()
	c := &execConn{Conn: mine, in: in, cancel: cancel}
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
	e.log.Debug("pod exec stream up", "pod", r.Name, "protocol", ex.protocol(), "since_create_ms", e.since(r.ID).Milliseconds())
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
	in     *stdinPipe
	cancel context.CancelFunc
	once   sync.Once
}

func (c *execConn) Read(p []byte) (int, error)  { return c.br.Read(p) }
func (c *execConn) Write(p []byte) (int, error) { return c.in.Write(p) }

func (c *execConn) SetWriteDeadline(t time.Time) error {
	c.in.SetWriteDeadline(t)
	return nil
}

func (c *execConn) SetDeadline(t time.Time) error {
	c.in.SetWriteDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *execConn) Close() error {
	c.once.Do(func() {
		c.in.CloseWrite()
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
