package broker

import (
	"io"
	"log/slog"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/account"
	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/audit/xfer"
	"github.com/sshgate/sshgate/internal/policy"
)

// guardedChannel is the user's side of an sftp subsystem channel under a
// grant's --upload-only or --download-only. Read (the client's requests, on
// their way to the target) passes only the requests xfer.SFTPGuard allows;
// each refused one is answered by the gate with its own status reply,
// written into the target's replies (Write) between two whole packets. A
// packet the guard cannot read closes the channel. The relay's taps see
// only what passes: the audit parser never sees a refused request, which is
// audited here as a denied file operation.
type guardedChannel struct {
	ssh.Channel
	guard *xfer.SFTPGuard
	emit  func(audit.Event)
	log   *slog.Logger

	in  []byte // allowed request bytes not yet returned by Read
	fwd []byte // in's buffer
	raw []byte // read buffer

	mu      sync.Mutex // the user's stdout: relayed replies and the gate's
	bounds  xfer.SFTPBounds
	queued  []byte // the gate's replies waiting for a packet boundary
	werr    error
	closing sync.Once
}

// sftpGuard returns the channel the relay uses on the user's side: ch, or
// ch behind the SFTP guard for an sftp subsystem session under a grant's
// --upload-only or --download-only.
func (c *conn) sftpGuard(ch ssh.Channel, s *account.Setup, p policy.Permit, session string) ssh.Channel {
	ctl := p.Controls
	if (!ctl.UploadOnly && !ctl.DownloadOnly) || s.Start.Type != "subsystem" {
		return ch
	}
	var v struct{ S string }
	if ssh.Unmarshal(s.Start.Payload, &v) != nil || xfer.Transfer("subsystem", v.S) != "sftp" {
		return ch
	}
	emit := func(e audit.Event) {
		e.SessionID, e.Target, e.Login = session, p.Target.Name, p.Login
		c.log.Info("sftp request refused by the grant's controls", "target", p.Target.Name, "op", e.Op, "reason", e.Reason)
		c.emit(e)
	}
	return newGuardedChannel(ch, ctl.DownloadOnly, ctl.UploadOnly, emit, c.log)
}

// maxQueued bounds the gate's replies waiting for the target to finish a
// packet; a client that piles up more is cut off.
const maxQueued = 1 << 20

func newGuardedChannel(ch ssh.Channel, noUpload, noDownload bool, emit func(audit.Event), log *slog.Logger) *guardedChannel {
	return &guardedChannel{Channel: ch, guard: &xfer.SFTPGuard{NoUpload: noUpload, NoDownload: noDownload},
		emit: emit, log: log, raw: make([]byte, 32<<10)}
}

func (g *guardedChannel) fail(why string) {
	g.closing.Do(func() {
		g.log.Warn("closing an sftp channel: "+why, "err", xfer.ErrSFTPMalformed)
		_ = g.Channel.Close()
	})
}

// Read returns the client's allowed requests.
func (g *guardedChannel) Read(p []byte) (int, error) {
	for len(g.in) == 0 {
		n, err := g.Channel.Read(g.raw)
		if n > 0 {
			fwd, denied, gerr := g.guard.Client(g.raw[:n], g.fwd[:0])
			g.fwd, g.in = fwd, fwd
			for _, d := range denied {
				g.emit(d.Event)
				if werr := g.inject(d.Reply); werr != nil {
					return 0, werr
				}
			}
			if gerr != nil {
				g.fail("a request the gate cannot read")
				return 0, io.EOF
			}
		}
		if len(g.in) == 0 && err != nil {
			return 0, err
		}
	}
	n := copy(p, g.in)
	g.in = g.in[n:]
	return n, nil
}

// inject writes the gate's reply now if the target's stream is between
// packets, or queues it for the next boundary.
func (g *guardedChannel) inject(reply []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.werr != nil {
		return g.werr
	}
	if g.bounds.AtBoundary() && len(g.queued) == 0 {
		_, g.werr = g.Channel.Write(reply)
		return g.werr
	}
	if len(g.queued)+len(reply) > maxQueued {
		g.fail("too many refused requests waiting")
		return io.EOF
	}
	g.queued = append(g.queued, reply...)
	return nil
}

// Write relays the target's replies, with the gate's queued replies after
// each whole packet.
func (g *guardedChannel) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	done := 0
	for done < len(p) {
		if g.werr != nil {
			return done, g.werr
		}
		n, end, err := g.bounds.Next(p[done:])
		if err != nil {
			g.fail("a reply from the target the gate cannot read")
			g.werr = io.EOF
			return done, g.werr
		}
		w, werr := g.Channel.Write(p[done : done+n])
		done += w
		if werr != nil {
			g.werr = werr
			return done, werr
		}
		if end && len(g.queued) > 0 {
			_, g.werr = g.Channel.Write(g.queued)
			g.queued = nil
		}
	}
	return done, nil
}
