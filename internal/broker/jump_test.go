package broker

import (
	"testing"

	"github.com/sshgate/sshgate/internal/gate"
)

func TestJumpRoute(t *testing.T) {
	for _, tt := range []struct {
		inner string
		want  gate.Route
		bad   bool
	}{
		{"root", gate.Route{User: "alice", Target: "web-1", Login: "root", Raw: "web-1+root"}, false},
		{"alice", gate.Route{User: "alice", Target: "web-1", Raw: "web-1"}, false},
		{"", gate.Route{User: "alice", Target: "web-1", Raw: "web-1"}, false},
		{"www-data", gate.Route{User: "alice", Target: "web-1", Login: "www-data", Raw: "web-1+www-data"}, false},
		{"Root", gate.Route{User: "alice", Target: "web-1", Raw: "web-1+Root"}, true},
		{"bob+db-1", gate.Route{User: "alice", Target: "web-1", Raw: "web-1+bob+db-1"}, true},
		{"x\x1b[2J", gate.Route{User: "alice", Target: "web-1", Raw: "web-1+x?[2J"}, true},
	} {
		got, bad := jumpRoute("alice", "web-1", tt.inner)
		if got != tt.want || bad != tt.bad {
			t.Errorf("jumpRoute(%q): %+v %v, want %+v %v", tt.inner, got, bad, tt.want, tt.bad)
		}
	}
}
