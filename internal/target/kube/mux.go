package kube

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/sshgate/sshgate/internal/coalesce"
	"github.com/sshgate/sshgate/internal/muxproto"
	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// The warm path of keeper pods (pool and per-user): the engine keeps one
// exec stream per such pod into `sshgate-agent --mux` (muxproto), opened
// as soon as the pod runs (Start), and each attached exec of the agent's
// --stdio that the lifecycle asks for becomes a new stream over it. A warm
// connection then costs no API-server exec: its first byte is the SSH
// handshake with the agent, which the gate still pins by host key exactly
// as over an exec of its own (whatever answers on the stream must hold
// that key). The streams' flow control is per stream (yamux windows), so a
// connection whose client reads slowly holds back only itself.
//
// When the stream dies (the pod was killed, the agent was, the API server
// dropped it) every connection over it ends as its exec would have, and the
// lifecycle says why to each user; the next connection to the same pod
// opens a new stream (after muxRetry if opening failed), and meanwhile,
// beyond muxproto.MaxStreams, or for a pod this engine did not create
// (adopted from another gate), a connection gets an exec of its own as
// before. Remove and Close end the stream.

// muxRetry is how long a pod whose stream could not be opened (an agent
// image without --mux, say) gets an exec per connection before the next try.
const muxRetry = 10 * time.Second

type podMux struct {
	name   string
	ctx    context.Context // ends the stream (Remove, Close)
	cancel context.CancelFunc
	ready  chan struct{} // closed once sess or err is set
	sess   *yamux.Session
	err    error
	at     time.Time // when opening failed
	slots  chan struct{}
}

// keeperBase is the agent command of a keeper pod's long-lived stream
// (without its mode flag), or nil for any other pod: the entrypoint the
// lifecycle gave a pool or per-user pod, up to its --listen.
func keeperBase(req lifecycle.CreateRequest) []string {
	if req.Labels[lifecycle.LabelPool] != "1" && req.Labels[lifecycle.LabelPer] != "user" {
		return nil
	}
	ep := req.Entrypoint
	i := slices.Index(ep, "--listen")
	if len(ep) == 0 || ep[0] != lifecycle.AgentMount || i < 1 {
		return nil
	}
	return slices.Clone(ep[:i])
}

// isAgentStdio: cmd is the lifecycle's `agent ... --stdio`.
func isAgentStdio(cmd []string) bool {
	return len(cmd) > 1 && cmd[0] == lifecycle.AgentMount && cmd[len(cmd)-1] == "--stdio"
}

// keep records r as a keeper pod whose agent runs as base.
func (e *Engine) keep(r lifecycle.Ref, base []string) {
	if base == nil || e.cfg.NoMux {
		return
	}
	e.muxMu.Lock()
	e.keepers[r.ID] = base
	e.muxMu.Unlock()
}

// prewarm opens r's stream in the background, if r is a keeper pod.
func (e *Engine) prewarm(r lifecycle.Ref) {
	e.muxMu.Lock()
	defer e.muxMu.Unlock()
	if base, ok := e.keepers[r.ID]; ok && e.muxes[r.ID] == nil && e.bg.Err() == nil {
		e.openMux(r, base)
	}
}

// openMux starts opening r's stream (under muxMu).
func (e *Engine) openMux(r lifecycle.Ref, base []string) *podMux {
	m := &podMux{name: r.Name, ready: make(chan struct{}), slots: make(chan struct{}, muxproto.MaxStreams)}
	m.ctx, m.cancel = context.WithCancel(e.bg)
	e.muxes[r.ID] = m
	e.muxWG.Add(1)
	go e.runMux(r, base, m)
	return m
}

// runMux opens m's exec stream and holds it until it ends, Remove or Close.
func (e *Engine) runMux(r lifecycle.Ref, base []string, m *podMux) {
	defer e.muxWG.Done()
	defer m.cancel()
	t0 := time.Now()
	sess, err := e.dialMux(m.ctx, r, base)
	e.muxMu.Lock()
	if err != nil {
		m.err, m.at = err, time.Now()
	} else {
		m.sess = sess
	}
	close(m.ready)
	e.muxMu.Unlock()
	if err != nil {
		e.log.Warn("the pod's agent stream could not be opened; an exec per connection for now", "pod", r.Name, "err", err)
		return
	}
	e.log.Debug("pod exec", "pod", r.Name, "mode", "mux", "took", time.Since(t0).Round(time.Millisecond))
	go func() {
		// The agent never opens a stream: one that does (what answers is
		// the container user's to replace) ends the session, so that it
		// cannot make the gate hold streams nobody reads.
		if st, err := sess.AcceptStream(); err == nil {
			st.Close()
			e.log.Warn("the pod's agent opened a stream; its stream is closed", "pod", r.Name)
			sess.Close()
		}
	}()
	select {
	case <-sess.CloseChan():
	case <-m.ctx.Done():
	}
	sess.Close()
	e.muxMu.Lock()
	if e.muxes[r.ID] == m {
		delete(e.muxes, r.ID)
	}
	e.muxMu.Unlock()
	e.log.Debug("agent stream ended", "pod", r.Name)
}

// dialMux execs the agent's --mux in r and starts the session over it.
func (e *Engine) dialMux(ctx context.Context, r lifecycle.Ref, base []string) (*yamux.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.FirstByteTimeout)
	defer cancel()
	p, err := e.exec(ctx, r, lifecycle.ExecRequest{Cmd: append(slices.Clone(base), "--mux"), Attach: true})
	if err != nil {
		return nil, err
	}
	// yamux writes each frame's header and body apart: coalesced, they
	// reach the exec stream (a pipe into remotecommand's stdin copy, one
	// WebSocket message per read) together, with what queued meanwhile.
	c := coalesce.New(p.Conn)
	c.SetReadDeadline(time.Now().Add(e.cfg.FirstByteTimeout))
	sess, err := muxproto.Client(c)
	c.SetReadDeadline(time.Time{})
	if err == nil && ctx.Err() != nil {
		sess.Close()
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return sess, nil
}

// muxConn returns a new stream to r's agent for an exec of cmd (the
// agent's --stdio), or nil when this connection is to get an exec of its
// own (not a keeper pod, its stream failed lately or is full, ctx ended).
func (e *Engine) muxConn(ctx context.Context, r lifecycle.Ref, cmd []string) *muxStream {
	e.muxMu.Lock()
	base, ok := e.keepers[r.ID]
	if !ok || !slices.Equal(base, cmd[:len(cmd)-1]) || e.bg.Err() != nil {
		e.muxMu.Unlock()
		return nil
	}
	m := e.muxes[r.ID]
	if m != nil && m.err != nil && time.Since(m.at) >= muxRetry {
		m = nil
	}
	if m == nil {
		m = e.openMux(r, base)
	}
	e.muxMu.Unlock()
	select {
	case <-m.ready:
	case <-ctx.Done():
		return nil
	}
	if m.sess == nil {
		return nil
	}
	select {
	case m.slots <- struct{}{}:
	default:
		e.log.Warn("the pod's agent stream has its most connections; an exec for this one", "pod", r.Name, "streams", muxproto.MaxStreams)
		return nil
	}
	st, err := m.sess.OpenStream()
	if err != nil {
		<-m.slots
		e.log.Warn("open a stream to the pod's agent; an exec for this connection", "pod", r.Name, "err", err)
		return nil
	}
	e.log.Debug("agent stream opened, no exec", "pod", r.Name, "streams", len(m.slots))
	return &muxStream{Stream: st, release: func() { <-m.slots }}
}

// dropMux ends r's stream (Remove).
func (e *Engine) dropMux(r lifecycle.Ref) {
	e.muxMu.Lock()
	m := e.muxes[r.ID]
	delete(e.muxes, r.ID)
	delete(e.keepers, r.ID)
	e.muxMu.Unlock()
	if m != nil {
		m.cancel()
	}
}

// waitMuxes waits, at most d, for every stream's goroutine to end (Close).
func (e *Engine) waitMuxes(d time.Duration) error {
	done := make(chan struct{})
	go func() {
		e.muxWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(d):
		return errors.New("agent streams still closing")
	}
}

// muxStream is one connection's stream; Close gives its slot back once.
type muxStream struct {
	*yamux.Stream
	release func()
	once    sync.Once
}

func (s *muxStream) Close() error {
	err := s.Stream.Close()
	s.once.Do(s.release)
	return err
}
