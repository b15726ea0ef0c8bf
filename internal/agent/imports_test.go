package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent is a small static binary inside containers: it must not pull in
// the gate's heavy or server-side dependencies.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/sshgate/sshgate/cmd/sshgate-agent").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	allowed := map[string]bool{
		"github.com/sshgate/sshgate/cmd/sshgate-agent": true,
		"github.com/sshgate/sshgate/internal/agent":    true,
		"github.com/sshgate/sshgate/internal/gate":     true,
		"github.com/sshgate/sshgate/internal/sshkeys":  true,
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(dep, "github.com/sshgate/sshgate/") && !allowed[dep],
			strings.Contains(dep, "docker"), strings.Contains(dep, "moby"),
			strings.Contains(dep, "prometheus"), strings.Contains(dep, "k8s.io"),
			strings.Contains(dep, "sqlite"), strings.Contains(dep, "pgx"):
			t.Errorf("sshgate-agent depends on %s", dep)
		}
	}
}
