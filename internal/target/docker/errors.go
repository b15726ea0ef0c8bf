package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/sshgate/sshgate/internal/gate"
)

// publicf makes the error shown to the user for target t: the text is
// chosen here, the cause only goes to the log.
func publicf(t string, cause error, format string, args ...any) *gate.PublicError {
	return gate.Errorf(cause, "container for %s could not start: %s", t, fmt.Sprintf(format, args...))
}

// engineError classifies an engine error met while doing op for target t.
func engineError(t, op string, err error) error {
	var pe *gate.PublicError
	if errors.As(err, &pe) {
		return err
	}
	cause := fmt.Errorf("%s: %w", op, err)
	switch {
	case client.IsErrConnectionFailed(err):
		return publicf(t, cause, "the container engine is unreachable")
	case errors.Is(err, context.Canceled):
		return publicf(t, cause, "the connection was closed while it started")
	case errors.Is(err, context.DeadlineExceeded):
		return publicf(t, cause, "the container engine did not answer in time")
	case cerrdefs.IsInvalidArgument(err):
		if looksLikeLimits(err) {
			return publicf(t, cause, "the engine refused the limits")
		}
		return publicf(t, cause, "the engine refused the container settings")
	case cerrdefs.IsNotFound(err):
		// A network or a mount source missing at start time; the image
		// is checked before create and reported by name.
		return publicf(t, cause, "the engine could not find a resource it needs")
	case cerrdefs.IsConflict(err):
		return publicf(t, cause, "the engine reported a conflict")
	case cerrdefs.IsUnavailable(err), cerrdefs.IsResourceExhausted(err):
		return publicf(t, cause, "the container engine is busy")
	}
	return publicf(t, cause, "the container engine failed")
}

func looksLikeLimits(err error) bool {
	s := strings.ToLower(err.Error())
	for _, w := range []string{"memory", "cpu", "pids", "nanocpus", "limit", "swap", "shm"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}
