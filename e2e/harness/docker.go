package harness

import (
	"context"
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
		if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
			dockerWhy = "no Docker engine (run scripts/test-setup.sh): " + firstLine(string(out), err)
			return
		}
		if out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", TestImage).CombinedOutput(); err != nil {
			dockerWhy = "test image " + TestImage + " missing (run scripts/test-setup.sh): " + firstLine(string(out), err)
		}
	})
	if dockerWhy != "" {
		t.Skip(dockerWhy)
	}
}

func firstLine(out string, err error) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return err.Error()
	}
	line, _, _ := strings.Cut(out, "\n")
	return line
}
