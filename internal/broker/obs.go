package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/account"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/relay"
	"github.com/sshgate/sshgate/internal/watch"
)

// Observers are what watches the broker's sessions: metrics, recordings of
// PTY sessions and the live session registry. Every field is optional.
type Observers struct {
	Metrics  Metrics
	Recorder Recorder
	Live     Live
	// Watch holds the live PTY sessions others may watch (nil: watching is off).
	Watch *watch.Hub
	// FailClosed reports whether a session to target must end (or not
	// start) when its recording fails; false is fail-open: the session goes
	// on unrecorded, with a log line and a metric.
	FailClosed func(target string) bool
}

// Metrics is the part of the metrics the broker feeds.
type Metrics interface {
	SessionStarted()
	SessionEnded()
	SessionKilled()
	Bytes(in, out int64)
	TargetOpened(backend string, d time.Duration, err error)
	RecordingError()
}

// Recorder starts the recording of a PTY session.
type Recorder interface {
	// Record starts recording session id on a terminal of cols x rows of
	// type term. onError is called once, from another goroutine, if the
	// recording fails later.
	Record(id string, cols, rows uint32, term string, onError func(error)) (Recording, error)
}

// Recording is one session's recording: a relay tap that also records
// window changes.
type Recording interface {
	relay.Tap
	Resize(cols, rows uint32)
	Close() error
}

// Live is the registry of live sessions (`sshgate sessions`). Start
// registers s, whose byte counts are read from c; kill ends the session
// (asked from another process). The returned func unregisters it.
type Live interface {
	Start(s gate.LiveSession, c *relay.Counters, kill func()) (end func())
}

func (b *Broker) targetOpened(kind string, start time.Time, err error) {
	if b.Observers.Metrics != nil {
		b.Observers.Metrics.TargetOpened(kind, time.Since(start), err)
	}
}

// relayChannel relays a forwarded channel and counts its bytes into ctr,
// In from the user toward the target and Out back, whichever side opened
// it. toTarget says which side down is: true when down is the user's side
// (a channel the user opened), false for one the target opened
// (forwarded-tcpip), whose counts the relay makes the other way round.
func (c *conn) relayChannel(down ssh.Channel, downReqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request, toTarget bool, ctr *relay.Counters) {
	if ctr == nil {
		ctr = &relay.Counters{}
	}
	var raw relay.Counters
	relay.Channels(down, downReqs, up, upReqs, nil, &raw)
	in, out := raw.In.Load(), raw.Out.Load()
	if !toTarget {
		in, out = out, in
	}
	ctr.In.Store(in)
	ctr.Out.Store(out)
	if m := c.b.Observers.Metrics; m != nil {
		m.Bytes(in, out)
	}
}

// observed is the watch kept on one relayed session.
type observed struct {
	c        *conn
	id       string
	ch, upCh ssh.Channel
	s        *account.Setup
	target   string
	counters *relay.Counters
	rec      Recording
	watched  *watch.Session // nil: not watchable (no PTY, or watching is off)
	endLive  func()
	killOnce sync.Once
	killed   atomic.Bool
}

// errRecording refuses a session whose recording cannot start under fail-closed.
func errRecording(cause error) *gate.PublicError {
	return gate.Errorf(cause, "this session must be recorded and the recording failed")
}

// observe starts the watch on a session about to start: a recording for a
// PTY session, the live registry entry, the sessions gauge. An error
// (fail-closed recording) means the session must not start.
func (c *conn) observe(ch, upCh ssh.Channel, s *account.Setup, p policy.Permit) (*observed, error) {
	o := &observed{c: c, id: gate.NewID()[:16], ch: ch, upCh: upCh, s: s, target: p.Target.Name, counters: &relay.Counters{}}
	obs := c.b.Observers
	log := c.log.With("session_id", o.id)
	if obs.Recorder != nil && s.PTY != nil {
		rec, err := obs.Recorder.Record(o.id, s.PTY.Cols, s.PTY.Rows, s.PTY.Term, o.recordingFailed)
		if err != nil {
			if obs.Metrics != nil {
				obs.Metrics.RecordingError()
			}
			if o.failClosed() {
				pe := errRecording(err)
				log.Error("session refused: its recording cannot start", "target", p.Target.Name, "ref", pe.Ref, "err", err)
				return nil, pe
			}
			log.Warn("session not recorded: its recording cannot start (fail-open)", "target", p.Target.Name, "err", err)
		} else {
			o.rec = rec
		}
	}
	// Every tap on the session's data (the recorder, the watchers'
	// broadcaster; audit parsers join here).
	var taps relay.Taps
	if o.rec != nil {
		taps = append(taps, o.rec)
	}
	if obs.Watch != nil && s.PTY != nil {
		o.watched = obs.Watch.Add(watch.Info{ID: o.id, User: c.id.User, Target: p.Target.Name, Login: p.Login,
			Cols: s.PTY.Cols, Rows: s.PTY.Rows}, func(line string) { c.message(ch, s, line) })
		taps = append(taps, o.watched)
	}
	if len(taps) > 0 {
		o.counters.Tap = taps
	}
	if obs.Live != nil {
		o.endLive = obs.Live.Start(gate.LiveSession{ID: o.id, User: c.id.User, Target: p.Target.Name, Login: p.Login, KeyFP: c.id.Fingerprint, Started: time.Now()},
			o.counters, func() { o.kill("session ended by an administrator", 1) })
	}
	if obs.Metrics != nil {
		obs.Metrics.SessionStarted()
	}
	log.Debug("session observed", "recorded", o.rec != nil)
	return o, nil
}

func (o *observed) failClosed() bool {
	f := o.c.b.Observers.FailClosed
	return f != nil && f(o.target)
}

// recordingFailed is the recording's OnError: fail-open logs and counts;
// fail-closed also ends the session with a message.
func (o *observed) recordingFailed(err error) {
	if m := o.c.b.Observers.Metrics; m != nil {
		m.RecordingError()
	}
	if !o.failClosed() {
		o.c.log.Warn("session recording failed; the session goes on unrecorded (fail-open)", "session_id", o.id, "err", err)
		return
	}
	pe := errRecording(err)
	o.c.log.Error("session recording failed; ending the session (fail-closed)", "session_id", o.id, "ref", pe.Ref, "err", err)
	o.kill(pe.UserMessage(), 1)
}

// kill ends the session: one line for the user on stderr, a non-zero exit
// status, and both channels closed (which ends the relay).
func (o *observed) kill(msg string, status uint32) { o.stop(msg, status, true) }

// stop is kill; counted says whether sshgate_broker_sessions_killed_total
// counts it (not at the end of a drain).
func (o *observed) stop(msg string, status uint32, counted bool) {
	o.killOnce.Do(func() {
		o.killed.Store(true)
		if m := o.c.b.Observers.Metrics; m != nil && counted {
			m.SessionKilled()
		}
		o.c.log.Info("session killed", "session_id", o.id, "target", o.target, "reason", msg)
		o.c.message(o.ch, o.s, msg)
		_, _ = o.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{status}))
		// No CloseWrite: the relay may be writing to ch right now, and
		// x/crypto sets a channel's sent-EOF flag unlocked (a data race
		// under -race). Close is serialised with writes.
		_ = o.ch.Close()
		_ = o.upCh.Close()
	})
}

// filter wraps the session's request filter to record window changes.
func (o *observed) filter(next relay.Filter) relay.Filter {
	if o.rec == nil && o.watched == nil {
		return next
	}
	return func(req *ssh.Request) bool {
		ok := next == nil || next(req)
		if ok && req.Type == "window-change" {
			var w account.WinChange
			if ssh.Unmarshal(req.Payload, &w) == nil {
				if o.rec != nil {
					o.rec.Resize(w.Cols, w.Rows)
				}
				if o.watched != nil {
					o.watched.Resize(w.Cols, w.Rows)
				}
			}
		}
		return ok
	}
}

// end closes the watch when the relay is over.
func (o *observed) end() {
	obs := o.c.b.Observers
	if o.watched != nil { // its watchers read that the session ended
		o.watched.Close()
	}
	if o.rec != nil { // closed first: once the session is unlisted, its recording is complete
		_ = o.rec.Close()
	}
	if o.endLive != nil {
		o.endLive()
	}
	if obs.Metrics != nil {
		obs.Metrics.SessionEnded()
		obs.Metrics.Bytes(o.counters.In.Load(), o.counters.Out.Load())
	}
}
