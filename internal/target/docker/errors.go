package docker

import (
	"errors"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/sshgate/sshgate/internal/gate"
	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// engineError classifies an engine error met while doing op for target t.
func engineError(t, op string, err error) error {
	var pe *gate.PublicError
	if errors.As(err, &pe) {
		return err
	}
	cause := fmt.Errorf("%s: %w", op, err)
	if client.IsErrConnectionFailed(err) {
		return lifecycle.Failed(t, cause, "the container engine is unreachable")
	}
	if pe := lifecycle.ContextError(t, op, err); pe != nil {
		return pe
	}
	switch {
	case cerrdefs.IsInvalidArgument(err):
		if looksLikeLimits(err) {
			return lifecycle.Failed(t, cause, "the engine refused the limits")
		}
		return lifecycle.Failed(t, cause, "the engine refused the container settings")
	case cerrdefs.IsNotFound(err):
		// A network or a mount source missing at start time; the image
		// is checked before create and reported by name.
		return lifecycle.Failed(t, cause, "the engine could not find a resource it needs")
	case cerrdefs.IsConflict(err):
		return lifecycle.Failed(t, cause, "the engine reported a conflict")
	case cerrdefs.IsUnavailable(err), cerrdefs.IsResourceExhausted(err):
		return lifecycle.Failed(t, cause, "the container engine is busy")
	}
	return lifecycle.Failed(t, cause, "the container engine failed")
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

// startError classifies a failed container start: a user missing from the
// image or a mount source missing on the host, else as engineError.
func startError(r lifecycle.Ref, err error) error {
	low := strings.ToLower(err.Error())
	switch {
	case strings.Contains(low, "unable to find user") || strings.Contains(low, "no matching entries in passwd"):
		return lifecycle.Failed(r.Target, err, "the user does not exist in the image")
	case strings.Contains(low, "no such file") || strings.Contains(low, "not found") && strings.Contains(low, "mount"):
		return lifecycle.Failed(r.Target, err, "a mount source does not exist")
	}
	return engineError(r.Target, "start container "+r.Name, err)
}
