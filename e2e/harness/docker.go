package harness

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestImage is the local image scripts/test-setup.sh builds (no pull).
const TestImage = "sshgate-test/busybox:latest"

var (
	dockerOnce sync.Once
	dockerWhy  string
)

// RequireDocker skips the test, with the reason, when no Docker engine
// answers or the test image is missing (scripts/test-setup.sh starts the
// engine and builds the image; on a machine where dockerd cannot run, the
// Docker tests skip rather than fail).
func RequireDocker(t testing.TB) {
	t.Helper()
	dockerOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, dockerWhy = DockerReady(ctx)
	})
	if dockerWhy != "" {
		t.Skip(dockerWhy)
	}
}

// DockerReady returns the engine's version, or why Docker targets cannot be
// used here: no docker CLI, no engine answering, or no TestImage.
func DockerReady(ctx context.Context) (version, why string) {
	if _, err := exec.LookPath("docker"); err != nil {
		return "", "the docker CLI is not installed (run scripts/test-setup.sh)"
	}
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		return "", "no Docker engine (run scripts/test-setup.sh): " + firstLine(string(out), err)
	}
	version = strings.TrimSpace(string(out))
	if out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", TestImage).CombinedOutput(); err != nil {
		return "", "test image " + TestImage + " missing (run scripts/test-setup.sh): " + firstLine(string(out), err)
	}
	return version, ""
}

func firstLine(out string, err error) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return err.Error()
	}
	line, _, _ := strings.Cut(out, "\n")
	return line
}

// Container is one container of `docker ps -a`.
type Container struct {
	ID      string
	Running bool
	Labels  map[string]string
}

// DockerPS lists the containers (in every state) that carry all the labels
// (each KEY=VALUE or KEY).
func DockerPS(ctx context.Context, labels ...string) ([]Container, error) {
	args := []string{"ps", "-a", "--no-trunc", "--format", "{{.ID}}\t{{.State}}\t{{.Labels}}"}
	for _, l := range labels {
		args = append(args, "--filter", "label="+l)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, firstLine(stderr.String(), err))
	}
	var list []Container
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) < 2 || f[0] == "" {
			continue
		}
		c := Container{ID: f[0], Running: f[1] == "running", Labels: map[string]string{}}
		if len(f) == 3 {
			for _, kv := range strings.Split(f[2], ",") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					c.Labels[k] = v
				}
			}
		}
		list = append(list, c)
	}
	return list, nil
}

// RemoveLabelled force-removes every container carrying label (with its
// volumes) and returns how many there were.
func RemoveLabelled(label string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := DockerPS(ctx, label)
	if err != nil || len(list) == 0 {
		return 0
	}
	args := []string{"rm", "-f", "-v"}
	for _, c := range list {
		args = append(args, c.ID)
	}
	exec.CommandContext(ctx, "docker", args...).Run()
	return len(list)
}
