package route

import (
	"strings"
	"testing"

	"github.com/sshgate/sshgate/internal/gate"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    gate.Route
		wantErr error
	}{
		{"alice", gate.Route{User: "alice"}, nil},
		{"alice+web-1", gate.Route{User: "alice", Target: "web-1", Raw: "web-1"}, nil},
		{"alice+web-1+root", gate.Route{User: "alice", Target: "web-1", Login: "root", Raw: "web-1+root"}, nil},
		{"alice+web.prod_2", gate.Route{User: "alice", Target: "web.prod_2", Raw: "web.prod_2"}, nil},
		{"alice+gate", gate.Route{User: "alice", Raw: "gate", Gate: true}, nil},
		{"a", gate.Route{User: "a"}, nil},
		{"0day", gate.Route{User: "0day"}, nil},
		{"alice+web-1+_svc", gate.Route{User: "alice", Target: "web-1", Login: "_svc", Raw: "web-1+_svc"}, nil},
		// invalid users: authentication must fail
		{"", gate.Route{}, ErrInvalidUser},
		{"ALICE", gate.Route{}, ErrInvalidUser},
		{"аlice", gate.Route{}, ErrInvalidUser}, // Cyrillic а
		{"alice ", gate.Route{}, ErrInvalidUser},
		{"-V", gate.Route{}, ErrInvalidUser},
		{"--help", gate.Route{}, ErrInvalidUser},
		{"+web", gate.Route{}, ErrInvalidUser},
		{"alice\nx", gate.Route{}, ErrInvalidUser},
		{"alice\x00root", gate.Route{}, ErrInvalidUser},
		{"alice@web@x", gate.Route{}, ErrInvalidUser},
		{"\x1b]0;pwn\x07", gate.Route{}, ErrInvalidUser},
		{strings.Repeat("a", 64), gate.Route{}, ErrInvalidUser},
		{strings.Repeat("a", 10000), gate.Route{}, ErrInvalidUser},
		{"%2e%2e", gate.Route{}, ErrInvalidUser},
		{"\xc0\xae", gate.Route{}, ErrInvalidUser},
		{"\xff", gate.Route{}, ErrInvalidUser},
		// invalid target part: answered as an unknown target after auth
		{"alice+", gate.Route{User: "alice", Raw: ""}, ErrInvalidTarget},
		{"alice++web", gate.Route{User: "alice", Raw: "+web"}, ErrInvalidTarget},
		{"alice+../../x", gate.Route{User: "alice", Raw: "../../x"}, ErrInvalidTarget},
		{"alice+web;id", gate.Route{User: "alice", Raw: "web;id"}, ErrInvalidTarget},
		{"alice+$(id)", gate.Route{User: "alice", Raw: "$(id)"}, ErrInvalidTarget},
		{"alice+`id`", gate.Route{User: "alice", Raw: "`id`"}, ErrInvalidTarget},
		{"alice+web|nc", gate.Route{User: "alice", Raw: "web|nc"}, ErrInvalidTarget},
		{"alice+-oProxyCommand=x", gate.Route{User: "alice", Raw: "-oProxyCommand=x"}, ErrInvalidTarget},
		{"alice+Web", gate.Route{User: "alice", Raw: "Web"}, ErrInvalidTarget},
		{"alice+web+root+x", gate.Route{User: "alice", Raw: "web+root+x"}, ErrInvalidTarget},
		{"alice+web+Root", gate.Route{User: "alice", Raw: "web+Root"}, ErrInvalidTarget},
		{"alice+web+9root", gate.Route{User: "alice", Raw: "web+9root"}, ErrInvalidTarget},
		{"alice+gate+root", gate.Route{User: "alice", Raw: "gate+root"}, ErrInvalidTarget},
		{"alice+web\r\nINFO fake", gate.Route{User: "alice", Raw: "web??INFO fake"}, ErrInvalidTarget},
		{"alice" + strings.Repeat("+", 1000), gate.Route{}, ErrInvalidUser}, // over MaxLen
		// platform form NODEID-UID
		{"12-1000", gate.Route{Node: 12, UID: 1000, Raw: "12-1000"}, nil},
		{"1-1", gate.Route{Node: 1, UID: 1, Raw: "1-1"}, nil},
		{"999999999999999999-999999999999999999", gate.Route{Node: 999999999999999999, UID: 999999999999999999, Raw: "999999999999999999-999999999999999999"}, nil},
		{"1234567890123456789-1", gate.Route{}, ErrInvalidUser}, // 19 digits
		{"0-1000", gate.Route{}, ErrInvalidUser},
		{"12-0", gate.Route{}, ErrInvalidUser},
		{"012-1000", gate.Route{}, ErrInvalidUser},
		{"12-01000", gate.Route{}, ErrInvalidUser},
		{"12-1000+root", gate.Route{}, ErrInvalidUser},  // the platform form stands alone
		{"12-1000+web", gate.Route{}, ErrInvalidUser},   // and is never a user name
		{"12--1000", gate.Route{User: "12--1000"}, nil}, // not the platform form: an ordinary name
		{"12-1000-3", gate.Route{User: "12-1000-3"}, nil},
		{"a12-1000", gate.Route{User: "a12-1000"}, nil},
		{"12-1000a", gate.Route{User: "12-1000a"}, nil},
		{"-12-1000", gate.Route{}, ErrInvalidUser},
		{"12-", gate.Route{User: "12-"}, nil},
		{"alice+12-1000", gate.Route{User: "alice", Raw: "12-1000"}, ErrInvalidTarget},
		{"12-1000\n", gate.Route{}, ErrInvalidUser},
		{"١٢-١٠٠٠", gate.Route{}, ErrInvalidUser}, // Arabic-Indic digits
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
	for _, s := range []string{"alice", "alice+web-1", "alice+web-1+root", "alice+gate", "12-1000", "012-1", "1-2+x", "a+b+c+d", "+", "\xff", "alice+\x1b[31m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err == ErrInvalidUser {
			return
		}
		if r.Platform() {
			if err != nil || r.Node <= 0 || r.UID <= 0 || r.User != "" || r.Target != "" || r.Login != "" {
				t.Fatalf("Parse(%q) = %+v, %v: bad platform route", s, r, err)
			}
			if r.String() != s {
				t.Fatalf("platform round trip %q -> %q", s, r.String())
			}
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
		if r.Gate != (r.Raw == GateTarget) || r.Gate && r.Target != "" {
			t.Fatalf("Parse(%q) = %+v: Gate and Raw disagree", s, r)
		}
		// A valid route round-trips, except the reserved "gate" target which
		// means "no target".
		if r.Target != "" && r.String() != s {
			t.Fatalf("round trip %q -> %q", s, r.String())
		}
	})
}

func TestValidNameRefusesPlatformForm(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{{"web-1", true}, {"12-1000", false}, {"0-0", false}, {"12-1000x", true}, {"1-2-3", true}} {
		if got := ValidName(tt.in); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
