package policy

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sshgate/sshgate/internal/gate"
)

func TestParseDest(t *testing.T) {
	good := []struct{ in, canon string }{
		{"db.internal:5432", "db.internal:5432"},
		{"DB.Internal.:5432", "db.internal:5432"},
		{"localhost:22", "localhost:22"},
		{"web-1:8000-8099", "web-1:8000-8099"},
		{"web-1:80-80", "web-1:80"},
		{"web-1:*", "web-1:*"},
		{"web-1:1-65535", "web-1:*"},
		{"web-1:0080", "web-1:80"},
		{"10.1.2.3:443", "10.1.2.3:443"},
		{"10.0.0.0/8:*", "10.0.0.0/8:*"},
		{"10.1.2.3/32:443", "10.1.2.3:443"},
		{"0.0.0.0/0:443", "0.0.0.0/0:443"},
		{"[::1]:22", "[::1]:22"},
		{"[fd00::/8]:443", "[fd00::/8]:443"},
		{"[FD00:0::1]:443", "[fd00::1]:443"},
		{"/var/run/docker.sock", "/var/run/docker.sock"},
		{"/run/app sock", "/run/app sock"},
		{"a_b.example:1", "a_b.example:1"},
	}
	for _, tt := range good {
		d, err := ParseDest(tt.in)
		if err != nil {
			t.Errorf("ParseDest(%q): %v", tt.in, err)
			continue
		}
		if got := d.String(); got != tt.canon {
			t.Errorf("ParseDest(%q).String() = %q, want %q", tt.in, got, tt.canon)
		}
		if d2, err := ParseDest(d.String()); err != nil || d2 != d {
			t.Errorf("canonical %q does not parse back to itself: %+v %v", d.String(), d2, err)
		}
	}
	bad := []struct{ in, msg string }{
		{"", "empty"},
		{"db", "want HOST:PORT"},
		{"db:", "is not a port"},
		{":80", "no host"},
		{"db:0", `"0" is not a port`},
		{"db:65536", `"65536" is not a port`},
		{"db:-1", "is not a port"},
		{"db:+80", "is not a port"},
		{"db:80-", "is not a port"},
		{"db:90-80", "range 90-80 is empty"},
		{"db:8*", "is not a port"},
		{"db:http", `"http" is not a port`},
		{"10.0.0.1/8:22", "did you mean 10.0.0.0/8"},
		{"10.0.0.0/33:22", "is not a CIDR prefix"},
		{"[::ffff:10.0.0.1]:22", "write an IPv4 address"},
		{"[::ffff:10.0.0.0/104]:22", "write an IPv4 prefix"},
		{"[fe80::1%eth0]:22", "zone"},
		{"::1:22", "want HOST:PORT"},
		{"2852039166:80", "is not an IP address"},
		{"0xa9fea9fe:80", "is not an IP address"},
		{"10.1:80", "is not an IP address"},
		{"0251.0376.0251.0376:80", "is not an IP address"},
		{"10.0.0.256:80", "is not an IP address"},
		{"-db:80", "is not an IP address"},
		{"db..x:80", "is not an IP address"},
		{"d b:80", "is not an IP address"},
		{"db\x1b;x\a:80", `"db?;x?"`},
		{"*:80", "is not an IP address"},
		{"relative/sock", "want HOST:PORT"},
		{"/", "not a socket path"},
		{"/run/../etc/sock", `did you mean "/etc/sock"`},
		{"/run/x/", `did you mean "/run/x"`},
		{"/run/a\nb", "control character"},
		{"/" + strings.Repeat("a", 110), "longer than 107"},
		{strings.Repeat("a", 301), "longer than 300"},
	}
	for _, tt := range bad {
		_, err := ParseDest(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseDest(%q) = %v, want an error containing %q", tt.in, err, tt.msg)
		}
	}
}

func reach(t *testing.T, specs ...string) Reach {
	t.Helper()
	var r Reach
	r.add(specs)
	if len(r.To) != len(specs) {
		t.Fatalf("specs %q: %d parsed", specs, len(r.To))
	}
	return r
}

func TestReach(t *testing.T) {
	r := reach(t, "db.internal:5432", "10.0.0.0/8:8000-8099", "192.168.1.7:*", "[fd00::/8]:443", "/run/app.sock")
	tests := []struct {
		host string
		port uint32
		ok   bool
	}{
		{"db.internal", 5432, true},
		{"DB.INTERNAL", 5432, true}, // names are case-insensitive
		{"db.internal.", 5432, true},
		{"db.internal", 5433, false},
		{"db.internal..", 5432, false},
		{"db.internal.evil", 5432, false},
		{"xdb.internal", 5432, false},
		{"10.200.0.1", 8000, true},
		{"10.200.0.1", 8099, true},
		{"10.200.0.1", 7999, false},
		{"10.200.0.1", 8100, false},
		{"::ffff:10.200.0.1", 8050, true}, // where 10.200.0.1 is
		{"11.0.0.1", 8000, false},
		{"192.168.1.7", 1, true},
		{"192.168.1.7", 65535, true},
		{"192.168.1.7", 0, false},
		{"192.168.1.7", 65536, false},
		{"192.168.1.7", 1 << 32 / 2, false},
		{"192.168.1.8", 80, false},
		{"fd12::1", 443, true},
		{"FD12::1", 443, true},
		{"fd12::1%eth0", 443, false},
		{"fe80::1", 443, false},
		// Literal matching: a name is never an address, nor the reverse.
		{"localhost", 5432, false},
		{"10.0.0.1.", 8000, false},
		{"010.0.0.1", 8000, false},
		{"167772161", 8000, false}, // 10.0.0.1 as a number
		{"0x0a000001", 8000, false},
		{"169.254.169.254", 80, false},
		{"::ffff:169.254.169.254", 80, false},
		{"", 5432, false},
		{"/run/app.sock", 0, false},
	}
	for _, tt := range tests {
		if got := r.TCP(tt.host, tt.port); got != tt.ok {
			t.Errorf("TCP(%q, %d) = %v, want %v", tt.host, tt.port, got, tt.ok)
		}
	}
	for _, tt := range []struct {
		path string
		ok   bool
	}{{"/run/app.sock", true}, {"/run//app.sock", false}, {"/run/./app.sock", false}, {"/var/run/docker.sock", false}, {"", false}} {
		if got := r.Socket(tt.path); got != tt.ok {
			t.Errorf("Socket(%q) = %v, want %v", tt.path, got, tt.ok)
		}
	}
	any := Reach{AnyTCP: true}
	if !any.TCP("169.254.169.254", 80) || !any.TCP("anything", 1) || any.TCP("x", 0) {
		t.Error("AnyTCP reaches every host and port 1-65535")
	}
	if any.Socket("/var/run/docker.sock") {
		t.Error("AnyTCP reaches a unix socket")
	}
	if (Reach{}).TCP("db", 80) || (Reach{}).Socket("/x") {
		t.Error("the zero Reach reaches something")
	}
	// An entry that does not parse allows nothing (and not everything).
	var broken Reach
	broken.add([]string{"not a spec"})
	if broken.AnyTCP || broken.TCP("not a spec", 0) || broken.TCP("db", 80) {
		t.Errorf("an unparsable entry widened the reach: %+v", broken)
	}
}

// Several grants for the same login: forwarding to what any of them
// allows; one forwarding grant without --forward-to allows any host; a
// grant without --forwarding adds nothing.
func TestAccessibleReach(t *testing.T) {
	targets := []gate.Target{{Name: "web-1", Env: "prod", Login: "www"}}
	cases := []struct {
		name   string
		grants []gate.Grant
		any    bool
		to     []string
	}{
		{"one list", []gate.Grant{{Target: "web-1", Forwarding: true, ForwardTo: []string{"db:5432"}}}, false, []string{"db:5432"}},
		{"two lists", []gate.Grant{
			{Target: "web-1", Forwarding: true, ForwardTo: []string{"db:5432"}},
			{Env: "prod", Forwarding: true, ForwardTo: []string{"10.0.0.0/8:*"}},
		}, false, []string{"db:5432", "10.0.0.0/8:*"}},
		{"a list and an open grant", []gate.Grant{
			{Target: "web-1", Forwarding: true, ForwardTo: []string{"/run/app.sock"}},
			{Env: "prod", Forwarding: true},
		}, true, []string{"/run/app.sock"}},
		{"a list on a grant without forwarding", []gate.Grant{
			{Target: "web-1", ForwardTo: []string{"db:5432"}},
			{Env: "prod", Forwarding: true, ForwardTo: []string{"cache:6379"}},
		}, false, []string{"cache:6379"}},
		{"another login's list", []gate.Grant{
			{Target: "web-1", Login: "root", Forwarding: true},
			{Target: "web-1", Forwarding: true, ForwardTo: []string{"db:5432"}},
		}, false, []string{"db:5432"}},
	}
	for _, c := range cases {
		p, ok := Permitted(Accessible(targets, c.grants), "web-1", "www")
		if !ok || !p.Forwarding {
			t.Fatalf("%s: %+v %v", c.name, p, ok)
		}
		var got []string
		for _, d := range p.Reach.To {
			got = append(got, d.String())
		}
		if p.Reach.AnyTCP != c.any || strings.Join(got, " ") != strings.Join(c.to, " ") {
			t.Errorf("%s: reach any=%v %q, want any=%v %q", c.name, p.Reach.AnyTCP, got, c.any, c.to)
		}
	}
}

// The decision carries the reach; a certificate without
// permit-port-forwarding takes it away with the forwarding.
func TestDecideReach(t *testing.T) {
	snap := decideFixture()
	snap.Grants = []gate.Grant{{User: "alice", Target: "db-1", Forwarding: true, ForwardTo: []string{"127.0.0.1:5432"}}}
	key := &gate.Session{Identity: gate.Identity{User: "alice", Method: "publickey"}}
	r := gate.Route{User: "alice", Target: "db-1", Raw: "db-1"}
	d := Decide(snap, key, r, false, nil)
	if d.Err != nil || !d.Permit.Forwarding || !d.Permit.Reach.TCP("127.0.0.1", 5432) || d.Permit.Reach.TCP("127.0.0.1", 22) {
		t.Fatalf("decision %+v", d)
	}
	cert := *key
	cert.Cert = &gate.CertLogin{PTY: true}
	d = Decide(snap, &cert, r, false, nil)
	if d.Err != nil || d.Permit.Forwarding || d.Permit.Reach.TCP("127.0.0.1", 5432) {
		t.Fatalf("a certificate without permit-port-forwarding: %+v", d.Permit)
	}
	hook := &Hook{Target: "db-1", Forwarding: true, AllowForwarding: true}
	d = Decide(snap, key, gate.Route{User: "alice"}, false, hook)
	if d.Err != nil || !d.Permit.Reach.AnyTCP || d.Permit.Reach.Socket("/var/run/docker.sock") {
		t.Fatalf("the config webhook's forwarding: %+v", d.Permit.Reach)
	}
}

// FuzzParseDest: ParseDest never panics; what it accepts has a canonical
// spelling that parses back to the same entry, and its error messages are
// one printable line.
func FuzzParseDest(f *testing.F) {
	for _, s := range []string{"db.internal:5432", "10.0.0.0/8:8000-8099", "[fd00::/8]:*", "/var/run/docker.sock",
		"[::ffff:1.2.3.4]:1", "2852039166:80", "a:0", "x:1-0", "/a/../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDest(s)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r\x1b") || !utf8.ValidString(msg) {
				t.Fatalf("error for %q is not one printable line: %q", s, msg)
			}
			return
		}
		c := d.String()
		d2, err := ParseDest(c)
		if err != nil || d2 != d || d2.String() != c {
			t.Fatalf("%q -> %q -> %+v, %v", s, c, d2, err)
		}
		if d.Path == "" && (d.Lo < 1 || d.Lo > d.Hi) {
			t.Fatalf("%q: ports %d-%d", s, d.Lo, d.Hi)
		}
		var r Reach
		r.add([]string{c})
		if d.Path != "" {
			if !r.Socket(d.Path) || r.TCP(d.Path, 1) {
				t.Fatalf("%q: its own path", s)
			}
		} else if d.Name != "" && !r.TCP(d.Name, uint32(d.Lo)) {
			t.Fatalf("%q does not reach its own name", s)
		} else if d.Name == "" && !r.TCP(d.Prefix.Addr().String(), uint32(d.Hi)) {
			t.Fatalf("%q does not reach its own address", s)
		}
	})
}
