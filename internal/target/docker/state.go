package docker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// Start starts the container's main process.
func (e *Engine) Start(ctx context.Context, r lifecycle.Ref) error {
	if err := e.api.ContainerStart(ctx, r.ID, container.StartOptions{}); err != nil {
		return startError(r, err)
	}
	return nil
}

// Remove force-removes the container with its anonymous volumes.
func (e *Engine) Remove(ctx context.Context, r lifecycle.Ref) error {
	err := e.api.ContainerRemove(ctx, r.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) && !isRemovalInProgress(err) {
		return err
	}
	return nil
}

func isRemovalInProgress(err error) bool {
	return strings.Contains(err.Error(), "is already in progress")
}

// List returns every container, running or not, carrying all labels.
func (e *Engine) List(ctx context.Context, labels map[string]string) ([]lifecycle.Listed, error) {
	f := filters.NewArgs()
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	list, err := e.api.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	out := make([]lifecycle.Listed, 0, len(list))
	for _, c := range list {
		out = append(out, lifecycle.Listed{ID: c.ID, Names: c.Names, Labels: c.Labels})
	}
	return out, nil
}

// Inspect reports the container's state; with since, the engine's "oom"
// events since then count as an out-of-memory kill too.
func (e *Engine) Inspect(ctx context.Context, r lifecycle.Ref, since time.Time) (lifecycle.State, error) {
	st, err := e.api.ContainerInspect(ctx, r.ID)
	if cerrdefs.IsNotFound(err) {
		return lifecycle.State{Gone: true}, nil
	}
	if err != nil {
		return lifecycle.State{}, fmt.Errorf("inspect container %s: %w", r.Name, err)
	}
	if st.State == nil {
		return lifecycle.State{}, fmt.Errorf("inspect container %s: no state", r.Name)
	}
	s := lifecycle.State{
		Gone:     st.State.Status == "removing" || st.State.Dead,
		Running:  st.State.Running,
		ExitCode: st.State.ExitCode,
		Error:    st.State.Error,
		OOM:      st.State.OOMKilled,
	}
	if st.HostConfig != nil {
		s.MemoryLimit = st.HostConfig.Memory
	}
	if !since.IsZero() {
		s.OOMEvents = e.oomEvents(ctx, r.ID, since)
		s.OOM = s.OOM || s.OOMEvents > 0
	}
	return s, nil
}

// oomEvents counts the engine's oom events for id since t.
func (e *Engine) oomEvents(ctx context.Context, id string, t time.Time) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := filters.NewArgs(filters.Arg("container", id), filters.Arg("event", "oom"), filters.Arg("type", "container"))
	now := time.Now()
	msgs, errs := e.api.Events(ctx, events.ListOptions{
		Since:   strconv.FormatInt(t.Unix()-1, 10),
		Until:   strconv.FormatFloat(float64(now.UnixNano())/1e9, 'f', 3, 64),
		Filters: f,
	})
	n := 0
	for {
		select {
		case <-msgs:
			n++
		case <-errs:
			return n
		case <-ctx.Done():
			return n
		}
	}
}

// Wait blocks until the container is not running and returns its exit code.
func (e *Engine) Wait(ctx context.Context, r lifecycle.Ref) (int, error) {
	waitC, errC := e.api.ContainerWait(ctx, r.ID, container.WaitConditionNotRunning)
	select {
	case w := <-waitC:
		return int(w.StatusCode), nil
	case err := <-errC:
		return 0, err
	}
}

// Logs returns the last lines of the container's output.
func (e *Engine) Logs(ctx context.Context, r lifecycle.Ref) string {
	rc, err := e.api.ContainerLogs(ctx, r.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "5"})
	if err != nil {
		return ""
	}
	defer rc.Close()
	buf := make([]byte, 2048)
	n, _ := readFull(rc, buf)
	return stripMux(buf[:n])
}

var errNoExec = errors.New("exec not found")
