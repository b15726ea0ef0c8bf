package route

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Route
		wantErr error
	}{
		{"alice", Route{User: "alice"}, nil},
		{"alice+web-1", Route{User: "alice", Target: "web-1", Raw: "web-1"}, nil},
		{"alice+web-1+root", Route{User: "alice", Target: "web-1", Login: "root", Raw: "web-1+root"}, nil},
		{"alice+web.prod_2", Route{User: "alice", Target: "web.prod_2", Raw: "web.prod_2"}, nil},
		{"alice+gate", Route{User: "alice", Raw: "gate"}, nil},
		{"a", Route{User: "a"}, nil},
		{"0day", Route{User: "0day"}, nil},
		{"alice+web-1+_svc", Route{User: "alice", Target: "web-1", Login: "_svc", Raw: "web-1+_svc"}, nil},
		// invalid users: authentication must fail
		{"", Route{}, ErrInvalidUser},
		{"ALICE", Route{}, ErrInvalidUser},
		{"аlice", Route{}, ErrInvalidUser}, // Cyrillic а
		{"alice ", Route{}, ErrInvalidUser},
		{"-V", Route{}, ErrInvalidUser},
		{"--help", Route{}, ErrInvalidUser},
		{"+web", Route{}, ErrInvalidUser},
		{"alice\nx", Route{}, ErrInvalidUser},
		{"alice\x00root", Route{}, ErrInvalidUser},
		{"alice@web@x", Route{}, ErrInvalidUser},
		{"\x1b]0;pwn\x07", Route{}, ErrInvalidUser},
		{strings.Repeat("a", 64), Route{}, ErrInvalidUser},
		{strings.Repeat("a", 10000), Route{}, ErrInvalidUser},
		{"%2e%2e", Route{}, ErrInvalidUser},
		{"\xc0\xae", Route{}, ErrInvalidUser},
		{"\xff", Route{}, ErrInvalidUser},
		// invalid target part: answered as an unknown target after auth
		{"alice+", Route{User: "alice", Raw: ""}, ErrInvalidTarget},
		{"alice++web", Route{User: "alice", Raw: "+web"}, ErrInvalidTarget},
		{"alice+../../x", Route{User: "alice", Raw: "../../x"}, ErrInvalidTarget},
		{"alice+web;id", Route{User: "alice", Raw: "web;id"}, ErrInvalidTarget},
		{"alice+$(id)", Route{User: "alice", Raw: "$(id)"}, ErrInvalidTarget},
		{"alice+`id`", Route{User: "alice", Raw: "`id`"}, ErrInvalidTarget},
		{"alice+web|nc", Route{User: "alice", Raw: "web|nc"}, ErrInvalidTarget},
		{"alice+-oProxyCommand=x", Route{User: "alice", Raw: "-oProxyCommand=x"}, ErrInvalidTarget},
		{"alice+Web", Route{User: "alice", Raw: "Web"}, ErrInvalidTarget},
		{"alice+web+root+x", Route{User: "alice", Raw: "web+root+x"}, ErrInvalidTarget},
		{"alice+web+Root", Route{User: "alice", Raw: "web+Root"}, ErrInvalidTarget},
		{"alice+web+9root", Route{User: "alice", Raw: "web+9root"}, ErrInvalidTarget},
		{"alice+gate+root", Route{User: "alice", Raw: "gate+root"}, ErrInvalidTarget},
		{"alice+web\r\nINFO fake", Route{User: "alice", Raw: "web??INFO fake"}, ErrInvalidTarget},
		{"alice" + strings.Repeat("+", 1000), Route{}, ErrInvalidUser}, // over MaxLen
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != tt.wantErr {
			t.Errorf("Parse(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"alice", "alice+web-1", "alice+web-1+root", "alice+gate", "a+b+c+d", "+", "\xff", "alice+\x1b[31m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err == ErrInvalidUser {
			return
		}
		if !ValidName(r.User) {
			t.Fatalf("Parse(%q) gave invalid user %q", s, r.User)
		}
		for _, c := range []byte(r.Raw) {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("Raw %q holds a control or non-ASCII byte", r.Raw)
			}
		}
		if err != nil {
			return
		}
		if r.Target != "" && (!ValidName(r.Target) || r.Target == GateTarget) {
			t.Fatalf("Parse(%q) gave bad target %q", s, r.Target)
		}
		if r.Login != "" && !ValidLogin(r.Login) {
			t.Fatalf("Parse(%q) gave bad login %q", s, r.Login)
		}
		// A valid route round-trips, except the reserved "gate" target which
		// means "no target".
		if r.Target != "" && r.String() != s {
			t.Fatalf("round trip %q -> %q", s, r.String())
		}
	})
}
