package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/sshgate/sshgate/internal/watch"
)

// watchSession is `sessions watch ID`: the running gate of this data
// directory streams the session's output over DATA/watch.sock; this
// terminal is put in raw mode and q, Ctrl-C or Ctrl-D leaves.
func (e *env) watchSession(ctx context.Context, id string) error {
	if !watch.ValidID(id) {
		return usagef("sessions watch: %q is not a session id (16 hex digits, as `sshgate sessions` lists them)", id)
	}
	d, err := e.dataDir()
	if err != nil {
		return err
	}
	sock := d.WatchSocket()
	c, header, err := watch.Dial(sock, id)
	var refused *watch.Refused
	if errors.As(err, &refused) && refused.Busy {
		return failf("%s", refused.Msg)
	}
	if err != nil {
		return e.watchRefused(ctx, id, sock, err)
	}
	defer c.Close()
	eol := "\n"
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		old, err := term.MakeRaw(int(f.Fd()))
		if err == nil {
			defer func() { _ = term.Restore(int(f.Fd()), old) }()
			eol = "\r\n"
			go func() { // keys are not sent anywhere: q, Ctrl-C or Ctrl-D leaves
				buf := make([]byte, 64)
				for {
					n, err := f.Read(buf)
					if strings.ContainsAny(string(buf[:n]), "qQ\x03\x04") || err != nil {
						_ = c.Close()
						return
					}
				}
			}()
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	fmt.Fprintf(e.stderr, "sshgate: %s%s", header, eol)
	_, _ = io.Copy(e.stdout, c)
	fmt.Fprint(e.stderr, eol)
	return nil
}

// watchRefused explains a watch the local gate did not start: where the
// store says the session is, if anywhere.
func (e *env) watchRefused(ctx context.Context, id, sock string, cause error) error {
	where := ""
	if st, err := e.store(); err == nil {
		if ls, err := st.ListLiveSessions(ctx); err == nil {
			for _, l := range ls {
				if l.ID == id {
					where = "gate " + l.GateID
				}
			}
			if gs, err := st.ListGates(ctx); err == nil && where != "" {
				for _, g := range gs {
					if "gate "+g.ID == where && g.Address != "" {
						where += " (" + g.Address + ")"
					}
				}
			}
		}
	}
	switch {
	case where == "":
		return failf("session %s not found (no live PTY session with that id)", id)
	case errors.As(cause, new(*watch.Refused)):
		return failf("session %s is not a PTY session of this data directory's gate; the store lists it on %s: run `sshgate sessions watch` on that gate's host", id, where)
	}
	var oe *net.OpError
	if errors.As(cause, &oe) {
		cause = oe.Err
	}
	return failf("cannot reach a running gate at %s (%v); the store lists session %s on %s: run `sshgate sessions watch` on that gate's host", sock, cause, id, where)
}
