package policy

import (
	"reflect"
	"testing"

	"github.com/sshgate/sshgate/internal/gate"
)

func TestPermitted(t *testing.T) {
	targets := []gate.Target{
		{Name: "web-1", Env: "prod", Login: "www"},
		{Name: "web-2", Env: "prod", Login: "www"},
		{Name: "db-1", Env: "data", Login: "postgres"},
		{Name: "lab", Env: "lab", Login: "student"},
	}
	grants := []gate.Grant{
		{User: "alice", Env: "prod"},
		{User: "alice", Target: "web-1", Login: "root", Forwarding: true},
		{User: "alice", Target: "db-1", Forwarding: true},
		{User: "alice", Target: "db-1"},
	}
	access := Accessible(targets, grants)
	if len(access) != 3 {
		t.Fatalf("Accessible gave %d targets, want 3 (db-1, web-1, web-2): %+v", len(access), access)
	}
	if access[0].Target.Name != "db-1" || access[1].Target.Name != "web-1" || access[2].Target.Name != "web-2" {
		t.Fatalf("not sorted by name: %+v", access)
	}
	tests := []struct {
		target, login string
		ok            bool
		want          Permit
	}{
		{"web-1", "", true, Permit{Target: targets[0], Login: "www"}},
		{"web-1", "www", true, Permit{Target: targets[0], Login: "www"}},
		{"web-1", "root", true, Permit{Target: targets[0], Login: "root", Forwarding: true, Reach: Reach{AnyTCP: true}}},
		{"web-2", "root", false, Permit{}},
		{"web-2", "", true, Permit{Target: targets[1], Login: "www"}},
		{"db-1", "", true, Permit{Target: targets[2], Login: "postgres", Forwarding: true, Reach: Reach{AnyTCP: true}}},
		{"lab", "", false, Permit{}},
		{"nope", "", false, Permit{}},
	}
	for _, tt := range tests {
		got, ok := Permitted(access, tt.target, tt.login)
		if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Permitted(%q, %q) = %+v, %v; want %+v, %v", tt.target, tt.login, got, ok, tt.want, tt.ok)
		}
	}
}

// A target whose default login has no name (a container's own user) is
// shown with the login "default", and that login reaches it; a named
// default login is not reached as "default".
func TestUnnamedDefaultLogin(t *testing.T) {
	targets := []gate.Target{{Name: "box", Env: "lab"}, {Name: "web", Env: "lab", Login: "www"}}
	access := Accessible(targets, []gate.Grant{{User: "u", Env: "lab"}})
	if p, ok := Permitted(access, "box", DefaultLogin); !ok || p.Login != "" || p.Target.Name != "box" {
		t.Errorf("box+default: %+v %v", p, ok)
	}
	if _, ok := Permitted(access, "web", DefaultLogin); ok {
		t.Error("web+default reached a target whose default login is www")
	}
}

func TestDefaultLoginFirst(t *testing.T) {
	targets := []gate.Target{{Name: "t", Env: "e", Login: "zed"}}
	grants := []gate.Grant{{User: "u", Target: "t", Login: "adm"}, {User: "u", Target: "t"}}
	p, ok := Permitted(Accessible(targets, grants), "t", "")
	if !ok || p.Login != "zed" {
		t.Fatalf("default login: got %+v %v, want zed", p, ok)
	}
	grants = []gate.Grant{{User: "u", Target: "t", Login: "adm"}}
	p, ok = Permitted(Accessible(targets, grants), "t", "")
	if !ok || p.Login != "adm" {
		t.Fatalf("only granted login: got %+v %v, want adm", p, ok)
	}
	if _, ok := Permitted(Accessible(targets, grants), "t", "zed"); ok {
		t.Fatal("default login allowed although only adm was granted")
	}
}

// A container target has no login of its own: a grant without a login
// reaches it as the container's user (the empty login).
func TestContainerTargetWithoutLogin(t *testing.T) {
	targets := []gate.Target{{Name: "box", Env: "lab", Kind: gate.KindDocker}}
	p, ok := Permitted(Accessible(targets, []gate.Grant{{User: "u", Env: "lab"}}), "box", "")
	if !ok || p.Login != "" {
		t.Fatalf("got %+v %v, want the empty login", p, ok)
	}
	if _, ok := Permitted(Accessible(targets, []gate.Grant{{User: "u", Env: "lab"}}), "box", "root"); ok {
		t.Fatal("an ungranted login was allowed")
	}
}
