package container

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// settleFor is how long a container still shown running after its agent's
// connection was lost is asked again, and settleEvery how often.
const (
	settleFor   = 2 * time.Second
	settleEvery = 50 * time.Millisecond
)

// reportEnd logs what happened to the container during the session and
// returns it as a line for the user ("" when nothing notable happened):
// removed behind the gate's back, out of memory (the kernel may have killed
// a session process and left the container running), or exited non-zero. A
// per-connection agent exiting 0 at the end of its connection is normal.
// With settle, the connection to the agent was lost: the engine's state may
// lag the kill by a moment, so a container still shown running is asked
// again for up to settleFor.
func (b *Backend) reportEnd(ctx context.Context, bx *box, since time.Time, log *slog.Logger, settle bool) string {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := b.eng.Inspect(ictx, bx.ref(), time.Time{})
	for deadline := time.Now().Add(settleFor); settle && time.Now().Before(deadline) && (err == nil && st.Running || err != nil); {
		select {
		case <-ictx.Done():
			return ""
		case <-time.After(settleEvery):
		}
		st, err = b.eng.Inspect(ictx, bx.ref(), time.Time{})
	}
	if err == nil && !st.Gone {
		// Once settled, ask for the out-of-memory kills of the session.
		st, err = b.eng.Inspect(ictx, bx.ref(), since)
	}
	line, warn := postMortem(bx, st, err)
	if warn != "" {
		log.Warn(warn, "container", bx.name, "oom_events", st.OOMEvents, "running", st.Running,
			"exit_code", st.ExitCode, "error", st.Error, "memory_limit", st.MemoryLimit)
	}
	return line
}

// postMortem turns a container's state at the end of a session into the
// user's line and the log's message ("" for both when nothing notable
// happened).
func postMortem(bx *box, st State, err error) (line, logMsg string) {
	switch {
	case err != nil:
		return "", ""
	case st.Gone:
		return fmt.Sprintf("container for %s was removed", bx.target), "container was removed during the session"
	case st.OOM:
		return fmt.Sprintf("container for %s ran out of memory", bx.target), "container ran out of memory during the session"
	case !st.Running && (st.ExitCode != 0 || bx.keeper):
		return fmt.Sprintf("container for %s stopped (exit code %d)", bx.target, st.ExitCode), "container ended during the session"
	}
	return "", ""
}
