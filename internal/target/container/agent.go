package container

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
)

// start starts the container and, for a dialing main process, waits for
// the agent's connection.
func (b *Backend) start(ctx context.Context, bx *box) (_ net.Conn, err error) {
	if b.cfg.Started != nil {
		defer func() { b.cfg.Started(err) }()
	}
	var l *net.UnixListener
	if !bx.keeper {
		var err error
		if l, err = bx.dir.listen(socketFile); err != nil {
			return nil, Failed(bx.target, err, "the gate could not prepare it")
		}
		defer func() {
			l.Close()
			os.Remove(filepath.Join(bx.dir.path, socketFile))
		}()
	}
	if bx.keeper && bx.dir != nil {
		w, err := b.listenWarm(bx)
		if err != nil {
			return nil, Failed(bx.target, err, "the gate could not prepare it")
		}
		bx.warm = w
	}
	if err := b.eng.Start(ctx, bx.ref()); err != nil {
		return nil, err
	}
	if bx.keeper {
		return nil, b.runCmd(ctx, bx)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan error, 1)
	go func() {
		code, err := b.eng.Wait(wctx, bx.ref())
		if err != nil {
			if wctx.Err() == nil {
				failed <- fmt.Errorf("wait for container: %w", err)
			}
			return
		}
		failed <- fmt.Errorf("container exited with status %d before its agent connected%s", code, b.logTail(bx))
	}()
	conn, err := b.accept(ctx, bx, l, failed)
	if err != nil {
		return nil, err
	}
	// Only now, with the listener closed, may anything but the agent run.
	if err := b.runCmd(ctx, bx); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// runCmd starts the spec's command beside the agent (PID 1, which reaps)
// as the container user, detached; it ends with the container.
func (b *Backend) runCmd(ctx context.Context, bx *box) error {
	if len(bx.cmd) == 0 {
		return nil
	}
	if _, err := b.eng.Exec(ctx, bx.ref(), ExecRequest{User: bx.user, Cmd: bx.cmd, Env: containerEnv(bx.env)}); err != nil {
		var pe *gate.PublicError
		if errors.As(err, &pe) && pe.Cause != nil {
			err = pe.Cause // the engine's line gives way to this one
		}
		return Failed(bx.target, fmt.Errorf("run the container command: %w", err), "its command could not run")
	}
	return nil
}

// logTail returns the last lines of the container's output, for causes.
func (b *Backend) logTail(bx *box) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out := strings.TrimSpace(b.eng.Logs(ctx, bx.ref()))
	if out == "" {
		return ""
	}
	return "; output: " + Sanitize(out)
}

// accept waits for the agent's one connection on l, then closes l: a second
// dialer finds nobody listening.
func (b *Backend) accept(ctx context.Context, bx *box, l *net.UnixListener, failed <-chan error) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	timer := time.NewTimer(b.cfg.AgentTimeout)
	defer timer.Stop()
	var cause error
	select {
	case r := <-ch:
		if r.err == nil {
			return r.c, nil
		}
		cause = fmt.Errorf("accept agent connection: %w", r.err)
	case err := <-failed:
		cause = err
	case <-timer.C:
		cause = fmt.Errorf("agent did not connect within %s%s", b.cfg.AgentTimeout, b.logTail(bx))
	case <-ctx.Done():
	}
	l.Close()
	if r := <-ch; r.c != nil {
		r.c.Close()
	}
	if cause == nil {
		return nil, engineFailed(bx.target, "wait for agent", ctx.Err())
	}
	return nil, Failed(bx.target, cause, "its agent did not answer")
}

// connect starts a new agent for one connection in a running keeper
// container: over a fresh unix socket (socket transport) or --stdio over an
// exec stream.
func (b *Backend) connect(ctx context.Context, bx *box) (net.Conn, error) {
	cmd := append([]string{AgentMount}, agentArgs()...)
	if b.cfg.Transport == TransportExec {
		p, err := b.eng.Exec(ctx, bx.ref(), ExecRequest{User: bx.user, Cmd: append(cmd, "--stdio"), Env: containerEnv(bx.env), Attach: true})
		if err != nil {
			return nil, err
		}
		return p.Conn, nil
	}
	if bx.authFile == "" {
		if c := b.takeWarm(ctx, bx); c != nil {
			return c, nil
		}
	}
	name := "c-" + randomID(12) + ".sock"
	l, err := bx.dir.listen(name)
	if err != nil {
		return nil, Failed(bx.target, err, "the gate could not prepare it")
	}
	defer func() {
		l.Close()
		os.Remove(filepath.Join(bx.dir.path, name))
	}()
	t0 := time.Now()
	defer func() {
		b.log.Debug("agent exec", "container", bx.name, "took", time.Since(t0).Round(time.Millisecond))
	}()
	if bx.authFile != "" {
		cmd = []string{AgentMount, "--host-key", DirMount + "/" + hostKeyFile, "--authorized-keys", DirMount + "/" + bx.authFile}
	}
	cmd = append(cmd, "--dial", "unix:"+DirMount+"/"+name)
	p, err := b.eng.Exec(ctx, bx.ref(), ExecRequest{User: bx.user, Cmd: cmd, Env: containerEnv(bx.env)})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan error, 1)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			done, code, err := p.Exited(wctx)
			if err != nil {
				if wctx.Err() == nil {
					failed <- fmt.Errorf("inspect agent exec: %w", err)
				}
				return
			}
			if done {
				failed <- fmt.Errorf("agent exited with status %d before it connected", code)
				return
			}
		}
	}()
	return b.accept(ctx, bx, l, failed)
}

// Key exchanges the gate offers its agents. Over the socket transport the
// link is a unix socket in the gate's own directory, never on a network,
// so nobody can record it for a future quantum computer: plain curve25519
// goes first (the hybrid ML-KEM exchange costs both ends more CPU per
// connection; see BenchmarkLegWarm). The exec transport's stream may cross
// a network to a remote engine: there ML-KEM stays first.
var (
	socketKex = []string{ssh.KeyExchangeCurve25519, ssh.KeyExchangeMLKEM768X25519}
	execKex   = []string{ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519}
)

// clientConfig is how the gate logs in to the agent of bx.
func (b *Backend) clientConfig(bx *box, login string) *ssh.ClientConfig {
	kex := socketKex
	if b.cfg.Transport == TransportExec {
		kex = execKex
	}
	return &ssh.ClientConfig{
		User:              login,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(bx.keys.client)},
		HostKeyCallback:   sshkeys.PinnedHostKey(bx.keys.hostPub),
		HostKeyAlgorithms: sshkeys.HostKeyAlgorithms(bx.keys.hostPub),
		Timeout:           b.cfg.HandshakeTimeout,
		ClientVersion:     "SSH-2.0-sshgate",
		Config:            ssh.Config{Ciphers: sshkeys.ClientCiphers, KeyExchanges: kex},
	}
}
