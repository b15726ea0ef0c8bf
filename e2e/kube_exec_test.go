package e2e_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// TestKubeExecProtocol: the agent's exec stream is SPDY by default (the API
// server passes it through to the kubelet without translating it, the
// cheaper path), WebSocket with kubernetes.exec_protocol: websocket; both
// carry a connection byte-exact, per connection and over a per-user pod's
// long-lived --mux stream. The gate's debug log names the protocol of each
// stream it opened.
func TestKubeExecProtocol(t *testing.T) {
	payload := make([]byte, 4<<20+3)
	rand.Read(payload)
	sum := sha256.Sum256(payload)
	want := hex.EncodeToString(sum[:])
	for _, c := range []struct{ name, extra, want, not string }{
		{"default", "", "protocol=spdy", "protocol=websocket"},
		{"websocket", "  exec_protocol: websocket\n", "protocol=websocket", "protocol=spdy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newKubeWorld(t, c.extra+"log:\n  level: debug\n")
			box := w.target(t, "proto", "--image", harness.TestImage)
			mine := w.target(t, "protou", "--image", harness.TestImage, "--per", "user", "--idle-ttl", "5m")
			for _, target := range []string{box, mine, mine} {
				r := harness.Run(w.alice.SSHTo(target, nil, "sha256sum"), payload, short)
				if r.Code != 0 || !strings.HasPrefix(r.Stdout, want+" ") {
					t.Errorf("%s: exit %d stdout %q stderr %q, want sum %s", target, r.Code, r.Stdout, r.Stderr, want)
				}
			}
			if !w.gate.LogContains("pod exec stream up") || !w.gate.LogContains(c.want) || w.gate.LogContains(c.not) {
				t.Errorf("the gate's log does not show every exec stream on %s (and none on %s)", c.want, c.not)
			}
			if err := w.gate.Stop(); err != nil {
				t.Errorf("stop gate: %v", err)
			}
			w.waitNoPods(t, box)
			w.waitNoPods(t, mine)
		})
	}
}
