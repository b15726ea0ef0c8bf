package policy

import (
	"testing"

	"github.com/sshgate/sshgate/internal/gate"
)

func TestResolveName(t *testing.T) {
	infos := []gate.TargetInfo{
		{Target: "web-1", ID: 1, Aliases: []string{"www", "front"}},
		{Target: "web-2", ID: 2, Aliases: []string{"api"}},
		{Target: "www-old", ID: 3},
		{Target: "dup-a", ID: 4, Aliases: []string{"dup"}}, // the store forbids this;
		{Target: "dup-b", ID: 5, Aliases: []string{"dup"}}, // resolution still refuses it
	}
	tests := []struct {
		name string
		node int64
		want string
	}{
		{"web-1", 0, "web-1"},
		{"www", 0, "web-1"},
		{"front", 0, "web-1"},
		{"api", 0, "web-2"},
		{"www-old", 0, "www-old"},
		{"nosuch", 0, ""},
		{"dup", 0, ""}, // ambiguous: the same refusal as unknown
		{"", 2, "web-2"},
		{"", 9, ""},
		{"web-1", 2, "web-2"}, // a node id decides alone
	}
	for _, tt := range tests {
		if got := ResolveName(infos, tt.name, tt.node); got != tt.want {
			t.Errorf("ResolveName(%q, %d) = %q, want %q", tt.name, tt.node, got, tt.want)
		}
	}
}
