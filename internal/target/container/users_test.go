package container

import "testing"

func TestUsers(t *testing.T) {
	for _, tt := range []struct {
		in       string
		uid, gid int
		ok, root bool
	}{
		{"1000", 1000, 1000, true, false},
		{"1000:2000", 1000, 2000, true, false},
		{"0", 0, 0, true, true},
		{"0:0", 0, 0, true, true},
		{"root", 0, 0, false, true},
		{"root:users", 0, 0, false, true},
		{"app", 0, 0, false, false},
		{"1000:staff", 0, 0, false, false},
		{"-1", 0, 0, false, false},
	} {
		uid, gid, ok := NumericUser(tt.in)
		if ok != tt.ok || ok && (uid != tt.uid || gid != tt.gid) {
			t.Errorf("NumericUser(%q) = %d %d %v", tt.in, uid, gid, ok)
		}
		if r := IsRootUser(tt.in); r != tt.root {
			t.Errorf("IsRootUser(%q) = %v", tt.in, r)
		}
	}
}
