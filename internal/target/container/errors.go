package container

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

// Failed makes the error shown to the user when the container for target t
// could not start: the text is chosen here, the cause only goes to the log.
// Engines use it too, so that every such line reads the same.
func Failed(t string, cause error, format string, args ...any) *gate.PublicError {
	return gate.Errorf(cause, "container for %s could not start: %s", t, fmt.Sprintf(format, args...))
}

// ContextError is the user's line for a context error met while doing op
// for target t, or nil when err is not one.
func ContextError(t, op string, err error) *gate.PublicError {
	cause := fmt.Errorf("%s: %w", op, err)
	switch {
	case errors.Is(err, context.Canceled):
		return Failed(t, cause, "the connection was closed while it started")
	case errors.Is(err, context.DeadlineExceeded):
		return Failed(t, cause, "the container engine did not answer in time")
	}
	return nil
}

// engineFailed passes on an engine's public error and classifies anything
// else met while doing op for target t.
func engineFailed(t, op string, err error) error {
	var pe *gate.PublicError
	if errors.As(err, &pe) {
		return err
	}
	if pe := ContextError(t, op, err); pe != nil {
		return pe
	}
	return Failed(t, fmt.Errorf("%s: %w", op, err), "the container engine failed")
}

// Sanitize shortens s to 80 bytes and replaces control characters, for
// values quoted in a user's line or a log cause.
func Sanitize(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// CheckEnv refuses environment entries that are not KEY=VALUE.
func CheckEnv(t string, env []string) error {
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" || strings.ContainsAny(e, "\x00") {
			return Failed(t, fmt.Errorf("env %q", e), "an environment variable is invalid")
		}
	}
	return nil
}

// ParseMode reads a spec's container mode ("", "connection" or "user") and
// idle TTL (a duration, for "user"; "" for the default, returned as 0).
func ParseMode(t, per, idleTTL string) (perUser bool, ttl time.Duration, err error) {
	switch per {
	case "", "connection":
		return false, 0, nil
	case "user":
		if idleTTL == "" {
			return true, 0, nil
		}
		d, err := time.ParseDuration(idleTTL)
		if err != nil || d <= 0 {
			return false, 0, Failed(t, fmt.Errorf("idle ttl %q: %v", idleTTL, err), "the idle TTL is invalid")
		}
		return true, d, nil
	}
	return false, 0, Failed(t, fmt.Errorf("per %q", per), "the container mode is invalid")
}
