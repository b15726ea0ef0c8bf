package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

func decideFixture() Snapshot {
	return Snapshot{
		Targets: []gate.Target{
			{Name: "web-1", Env: "prod", Login: "www", Kind: gate.KindUpstream},
			{Name: "db-1", Env: "data", Login: "postgres", Kind: gate.KindUpstream},
			{Name: "lab", Env: "lab", Kind: gate.KindDocker, Docker: &gate.DockerSpec{Image: "img", Env: []string{"A=1", "B=2"}, Pool: 3}},
			{Name: "secret", Env: "ops", Login: "root", Kind: gate.KindUpstream},
		},
		Infos: []gate.TargetInfo{
			{Target: "web-1", ID: 1, Aliases: []string{"www"}},
			{Target: "db-1", ID: 2},
			{Target: "lab", ID: 3},
			{Target: "secret", ID: 4},
		},
		Grants: []gate.Grant{
			{User: "alice", Env: "prod"},
			{User: "alice", Target: "web-1", Login: "root", Forwarding: true},
			{User: "alice", Target: "db-1", Forwarding: true},
			{User: "alice", Env: "lab"},
		},
		User:  gate.UserInfo{User: "alice", UID: 1000},
		Modes: map[string]string{"web-1": gate.TOTPGrace, "db-1": gate.TOTPNever, "lab": gate.TOTPAlways},
	}
}

func TestDecide(t *testing.T) {
	key := &gate.Session{Identity: gate.Identity{User: "alice", Method: "publickey"},
		TOTP: gate.TOTPProof{Recorded: true, Proof: TOTPProofCode}}
	with := func(f func(s *gate.Session)) *gate.Session { s := *key; f(&s); return &s }
	noFwdCert := with(func(s *gate.Session) {
		s.Cert = &gate.CertLogin{PTY: false, Forwarding: false, ForceCommand: "uptime", HasForce: true}
	})
	grace := with(func(s *gate.Session) { s.TOTP.Proof = TOTPProofGrace })
	none := with(func(s *gate.Session) { s.TOTP.Proof = TOTPProofNone })
	unrecorded := with(func(s *gate.Session) { s.TOTP = gate.TOTPProof{} })
	hooked := with(func(s *gate.Session) { s.Webhook = &gate.WebhookLogin{Env: map[string]string{"B": "hook", "C": "3"}} })
	snap := decideFixture()
	defTarget := decideFixture()
	defTarget.User.DefaultTarget = "db-1"
	totpOff := decideFixture()
	totpOff.TOTP = false
	totpOn := decideFixture()
	totpOn.TOTP = true
	controlled := decideFixture()
	controlled.Sessions = Sessions{MaxSession: 8 * time.Hour, IdleTimeout: 5 * time.Minute}
	controlled.Grants = []gate.Grant{
		{User: "alice", Env: "prod", Controls: gate.Controls{NoShell: true, NoExec: true}},
		{User: "alice", Target: "web-1", Controls: gate.Controls{NoExec: true, NoSFTP: true}},
		{User: "alice", Target: "db-1", Forwarding: true, Controls: gate.Controls{NoSFTP: true, NoSCP: true, MaxSession: time.Hour}},
		{User: "alice", Env: "lab", Controls: gate.Controls{Command: "report"}},
		{User: "alice", Target: "secret", Controls: gate.Controls{AgentForwarding: true}},
	}
	agentCert := with(func(s *gate.Session) { s.Cert = &gate.CertLogin{PTY: true, Agent: true} })
	overrideOK := func(s gate.DockerSpec) (gate.DockerSpec, error) { s.Image = "other"; return s, nil }
	overrideBad := func(s gate.DockerSpec) (gate.DockerSpec, error) { return s, errors.New("image not allowed") }

	type want struct {
		gate       bool
		err        string // substring of the user's line; "" for none
		target     string
		login      string
		forwarding bool
		pty        bool
	}
	tests := []struct {
		name  string
		snap  Snapshot
		s     *gate.Session
		r     gate.Route
		bad   bool
		hook  *Hook
		want  want
		check func(t *testing.T, d Decision)
	}{
		{name: "no target: the gate", snap: snap, s: key, r: gate.Route{User: "alice"}, want: want{gate: true, pty: true}},
		{name: "USER+gate, even with a default target", snap: defTarget, s: key, r: gate.Route{User: "alice", Gate: true}, want: want{gate: true, pty: true}},
		{name: "default target", snap: defTarget, s: key, r: gate.Route{User: "alice"}, want: want{target: "db-1", login: "postgres", forwarding: true, pty: true}},
		{name: "default target no longer granted", snap: func() Snapshot { s := defTarget; s.Grants = s.Grants[:1]; return s }(), s: key,
			r: gate.Route{User: "alice"}, want: want{err: `target "db-1" not found or not permitted`}},
		{name: "by name, default login", snap: snap, s: key, r: gate.Route{User: "alice", Target: "web-1", Raw: "web-1"}, want: want{target: "web-1", login: "www", pty: true}},
		{name: "by name, granted login with forwarding", snap: snap, s: key, r: gate.Route{User: "alice", Target: "web-1", Login: "root", Raw: "web-1+root"},
			want: want{target: "web-1", login: "root", forwarding: true, pty: true}},
		{name: "ungranted login", snap: snap, s: key, r: gate.Route{User: "alice", Target: "web-1", Login: "admin", Raw: "web-1+admin"},
			want: want{err: `target "web-1+admin" not found or not permitted`}},
		{name: "by alias", snap: snap, s: key, r: gate.Route{User: "alice", Target: "www", Raw: "www"}, want: want{target: "web-1", login: "www", pty: true}},
		{name: "by NODEID-UID", snap: snap, s: key, r: gate.Route{User: "alice", Node: 2, UID: 1000, Raw: "2-1000"}, want: want{target: "db-1", login: "postgres", forwarding: true, pty: true}},
		{name: "unknown NODEID", snap: snap, s: key, r: gate.Route{User: "alice", Node: 9, UID: 1000, Raw: "9-1000"}, want: want{err: `target "9-1000" not found`}},
		{name: "ungranted target answers as unknown", snap: snap, s: key, r: gate.Route{User: "alice", Target: "secret", Raw: "secret"}, want: want{err: `target "secret" not found or not permitted`}},
		{name: "unknown target", snap: snap, s: key, r: gate.Route{User: "alice", Target: "nope", Raw: "nope"}, want: want{err: `target "nope" not found or not permitted`}},
		{name: "malformed target part", snap: snap, s: key, r: gate.Route{User: "alice", Raw: "Web?1"}, bad: true, want: want{err: `target "Web?1" not found or not permitted`}},
		{name: "menu choice", snap: snap, s: key, r: gate.Route{Target: "lab"}, want: want{target: "lab", pty: true}},
		{name: "menu choice not granted", snap: snap, s: key, r: gate.Route{Target: "secret"}, want: want{err: `target "secret" not found`}},
		{name: "certificate: no pty, no forwarding, force-command", snap: snap, s: noFwdCert, r: gate.Route{User: "alice", Target: "web-1", Login: "root", Raw: "web-1+root"},
			want: want{target: "web-1", login: "root", forwarding: false, pty: false},
			check: func(t *testing.T, d Decision) {
				if !d.HasForce || d.ForceCommand != "uptime" {
					t.Errorf("force-command %q %v", d.ForceCommand, d.HasForce)
				}
			}},
		{name: "certificate restrictions hold on the gate too", snap: snap, s: noFwdCert, r: gate.Route{User: "alice"}, want: want{gate: true, pty: false}},
		{name: "totp off: no check", snap: totpOff, s: unrecorded, r: gate.Route{User: "alice", Target: "lab", Raw: "lab"}, want: want{target: "lab", pty: true}},
		{name: "totp: code opens always", snap: totpOn, s: key, r: gate.Route{User: "alice", Target: "lab", Raw: "lab"}, want: want{target: "lab", pty: true}},
		{name: "totp: grace does not open always", snap: totpOn, s: grace, r: gate.Route{User: "alice", Target: "lab", Raw: "lab"},
			want: want{err: `target "lab" requires a verification code: reconnect as alice+lab`}},
		{name: "totp: grace opens grace", snap: totpOn, s: grace, r: gate.Route{User: "alice", Target: "web-1", Raw: "web-1"}, want: want{target: "web-1", login: "www", pty: true}},
		{name: "totp: no code opens never", snap: totpOn, s: none, r: gate.Route{User: "alice", Target: "db-1", Raw: "db-1"}, want: want{target: "db-1", login: "postgres", forwarding: true, pty: true}},
		{name: "totp: no code does not open grace (menu)", snap: totpOn, s: none, r: gate.Route{Target: "web-1"}, want: want{err: "requires a verification code"}},
		{name: "totp: nothing recorded is refused", snap: totpOn, s: unrecorded, r: gate.Route{User: "alice", Target: "db-1", Raw: "db-1"}, want: want{err: "requires a verification code"}},
		{name: "totp: a mode not read fails closed", snap: func() Snapshot { s := totpOn; s.Modes = nil; return s }(), s: grace,
			r: gate.Route{User: "alice", Target: "web-1", Raw: "web-1"}, want: want{err: "requires a verification code"}},
		{name: "webhook failed: everything refused, the gate too", snap: snap, s: key, r: gate.Route{User: "alice"}, hook: &Hook{Err: errors.New("down")},
			want: want{err: ErrHookRefused}},
		{name: "webhook picks a target without a grant", snap: snap, s: key, r: gate.Route{User: "alice"}, hook: &Hook{Target: "secret"},
			want: want{target: "secret", login: "root", pty: true}},
		{name: "webhook target forwarding within allow", snap: snap, s: key, r: gate.Route{User: "alice"}, hook: &Hook{Target: "secret", Forwarding: true, AllowForwarding: true},
			want: want{target: "secret", login: "root", forwarding: true, pty: true}},
		{name: "webhook asks forwarding outside allow", snap: snap, s: key, r: gate.Route{User: "alice"}, hook: &Hook{Target: "secret", Forwarding: true},
			want: want{err: ErrHookRefused}},
		{name: "webhook target not in the store", snap: snap, s: key, r: gate.Route{User: "alice"}, hook: &Hook{Target: "ghost"}, want: want{err: ErrHookRefused}},
		{name: "webhook target invalid", snap: snap, s: key, r: gate.Route{User: "alice"}, hook: &Hook{Target: "Bad Name"}, want: want{err: ErrHookRefused}},
		{name: "webhook beats a malformed username", snap: snap, s: key, r: gate.Route{User: "alice", Raw: "x?"}, bad: true, hook: &Hook{Target: "db-1", Login: "admin"},
			want: want{target: "db-1", login: "admin", pty: true}},
		{name: "webhook without a target leaves routing to grants", snap: snap, s: key, r: gate.Route{User: "alice", Target: "secret", Raw: "secret"}, hook: &Hook{},
			want: want{err: `target "secret" not found`}},
		{name: "webhook container override", snap: snap, s: key, r: gate.Route{User: "alice", Target: "lab", Raw: "lab"}, hook: &Hook{Docker: overrideOK},
			want: want{target: "lab", pty: true},
			check: func(t *testing.T, d Decision) {
				if d.Permit.Target.Docker.Image != "other" {
					t.Errorf("image %q, want the override", d.Permit.Target.Docker.Image)
				}
			}},
		{name: "webhook container override refused", snap: snap, s: key, r: gate.Route{User: "alice", Target: "lab", Raw: "lab"}, hook: &Hook{Docker: overrideBad}, want: want{err: ErrHookRefused}},
		{name: "webhook container settings for a non-container", snap: snap, s: key, r: gate.Route{User: "alice", Target: "web-1", Raw: "web-1"}, hook: &Hook{Docker: overrideOK},
			want: want{err: ErrHookRefused}},
		{name: "auth webhook env reaches the container spec", snap: snap, s: hooked, r: gate.Route{User: "alice", Target: "lab", Raw: "lab"},
			want: want{target: "lab", pty: true},
			check: func(t *testing.T, d Decision) {
				spec := d.Permit.Target.Docker
				if got := strings.Join(spec.Env, ","); got != "A=1,B=hook,C=3" || spec.Pool != 0 {
					t.Errorf("env %q pool %d", got, spec.Pool)
				}
				if d.Env["C"] != "3" {
					t.Errorf("session env %v", d.Env)
				}
				if orig := decideFixture().Targets[2].Docker; strings.Join(orig.Env, ",") != "A=1,B=2" {
					t.Errorf("the snapshot's spec was changed: %v", orig.Env)
				}
			}},
		{name: "grant controls reach the permit, limits resolved", snap: controlled, s: key, r: gate.Route{User: "alice", Target: "db-1", Raw: "db-1"},
			want: want{target: "db-1", login: "postgres", forwarding: true, pty: true},
			check: func(t *testing.T, d Decision) {
				want := gate.Controls{NoSFTP: true, NoSCP: true, MaxSession: time.Hour, IdleTimeout: 5 * time.Minute}
				if d.Permit.Controls != want {
					t.Errorf("controls %+v, want %+v", d.Permit.Controls, want)
				}
			}},
		{name: "grant controls: two grants, the most permissive", snap: controlled, s: key, r: gate.Route{User: "alice", Target: "web-1", Raw: "web-1"},
			want: want{target: "web-1", login: "www", pty: true},
			check: func(t *testing.T, d Decision) {
				want := gate.Controls{NoExec: true, MaxSession: 8 * time.Hour, IdleTimeout: 5 * time.Minute}
				if d.Permit.Controls != want {
					t.Errorf("controls %+v, want %+v", d.Permit.Controls, want)
				}
			}},
		{name: "grant forced command", snap: controlled, s: key, r: gate.Route{User: "alice", Target: "lab", Raw: "lab"},
			want: want{target: "lab", pty: true},
			check: func(t *testing.T, d Decision) {
				if d.Permit.Controls.Command != "report" || d.HasForce {
					t.Errorf("controls %+v, cert force %v", d.Permit.Controls, d.HasForce)
				}
			}},
		{name: "the certificate's force-command beats the grant's", snap: controlled, s: noFwdCert, r: gate.Route{User: "alice", Target: "lab", Raw: "lab"},
			want: want{target: "lab", pty: false},
			check: func(t *testing.T, d Decision) {
				if d.Permit.Controls.Command != "" || d.ForceCommand != "uptime" {
					t.Errorf("controls %+v, cert force %q", d.Permit.Controls, d.ForceCommand)
				}
			}},
		{name: "agent forwarding from the grant", snap: controlled, s: key, r: gate.Route{User: "alice", Target: "secret", Raw: "secret"},
			want: want{target: "secret", login: "root", pty: true},
			check: func(t *testing.T, d Decision) {
				if !d.Permit.Controls.AgentForwarding {
					t.Errorf("controls %+v, want agent forwarding", d.Permit.Controls)
				}
			}},
		{name: "agent forwarding: a certificate with permit-agent-forwarding keeps it", snap: controlled, s: agentCert, r: gate.Route{User: "alice", Target: "secret", Raw: "secret"},
			want: want{target: "secret", login: "root", pty: true},
			check: func(t *testing.T, d Decision) {
				if !d.Permit.Controls.AgentForwarding {
					t.Errorf("controls %+v, want agent forwarding", d.Permit.Controls)
				}
			}},
		{name: "agent forwarding: a certificate without permit-agent-forwarding narrows the grant", snap: controlled, s: noFwdCert, r: gate.Route{User: "alice", Target: "secret", Raw: "secret"},
			want: want{target: "secret", login: "root"},
			check: func(t *testing.T, d Decision) {
				if d.Permit.Controls.AgentForwarding {
					t.Errorf("controls %+v: agent forwarding despite the certificate", d.Permit.Controls)
				}
			}},
		{name: "webhook target: the gate's defaults only", snap: controlled, s: key, r: gate.Route{User: "alice"}, hook: &Hook{Target: "db-1"},
			want: want{target: "db-1", login: "postgres", pty: true},
			check: func(t *testing.T, d Decision) {
				if want := (gate.Controls{MaxSession: 8 * time.Hour, IdleTimeout: 5 * time.Minute}); d.Permit.Controls != want {
					t.Errorf("controls %+v, want %+v", d.Permit.Controls, want)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.snap, tt.s, tt.r, tt.bad, tt.hook)
			w := tt.want
			switch {
			case w.err != "":
				if d.Err == nil || !strings.Contains(d.Err.UserMessage(), w.err) {
					t.Fatalf("got %+v, want refusal %q", d, w.err)
				}
				if d.Gate || d.Permit.Target.Name != "" {
					t.Fatalf("a refusal also permits: %+v", d)
				}
			case w.gate:
				if !d.Gate || d.Err != nil || d.Permit.Target.Name != "" {
					t.Fatalf("got %+v, want the gate", d)
				}
			default:
				if d.Err != nil || d.Gate {
					t.Fatalf("got %+v (%v), want a permit", d, d.Err)
				}
				p := d.Permit
				if p.Target.Name != w.target || p.Login != w.login || p.Forwarding != w.forwarding {
					t.Fatalf("permit %s as %q fwd %v; want %s as %q fwd %v", p.Target.Name, p.Login, p.Forwarding, w.target, w.login, w.forwarding)
				}
			}
			if w.err == "" && d.PTY != w.pty {
				t.Errorf("pty %v, want %v", d.PTY, w.pty)
			}
			if tt.check != nil {
				tt.check(t, d)
			}
		})
	}
}

// Candidate names the target whose TOTP mode the decision will read.
func TestCandidate(t *testing.T) {
	snap := decideFixture()
	snap.User.DefaultTarget = "db-1"
	for _, tt := range []struct {
		r    gate.Route
		bad  bool
		hook *Hook
		want string
	}{
		{gate.Route{Target: "www"}, false, nil, "web-1"},
		{gate.Route{Node: 3, UID: 1}, false, nil, "lab"},
		{gate.Route{}, false, nil, "db-1"},
		{gate.Route{Gate: true}, false, nil, ""},
		{gate.Route{Raw: "x?"}, true, nil, ""},
		{gate.Route{Target: "www"}, false, &Hook{Target: "secret"}, "secret"},
		{gate.Route{Target: "www"}, false, &Hook{Err: errors.New("x"), Target: "secret"}, "web-1"},
	} {
		if got := Candidate(snap, tt.r, tt.bad, tt.hook); got != tt.want {
			t.Errorf("Candidate(%+v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

// FuzzDecide: whatever the route, a decision is exactly one of gate,
// refusal or permit; a permit is always for a target the user's grants (or
// the webhook) name, as a login granted there; a certificate without
// forwarding never gets it.
func FuzzDecide(f *testing.F) {
	f.Add("web-1", "root", "", int64(0), false, false, false, "", uint16(0))
	f.Add("www", "", "", int64(0), true, false, true, "", uint16(0x5a5))
	f.Add("", "", "", int64(2), false, true, false, "secret", uint16(0xfff))
	f.Fuzz(func(t *testing.T, tgt, login, raw string, node int64, isGate, bad, noFwd bool, hookTarget string, ctl uint16) {
		snap := decideFixture()
		snap.TOTP = true
		// Controls on each grant from three bits each of ctl.
		for i := range snap.Grants {
			b := ctl >> (3 * i)
			snap.Grants[i].Controls = gate.Controls{NoShell: b&1 != 0, NoSFTP: b&2 != 0, MaxSession: time.Duration(b&4) * time.Minute}
			if b&6 == 6 {
				snap.Grants[i].Controls.Command = "forced"
			}
		}
		s := &gate.Session{Identity: gate.Identity{User: "alice"}, TOTP: gate.TOTPProof{Recorded: true, Proof: TOTPProofCode}}
		if noFwd {
			s.Cert = &gate.CertLogin{PTY: true}
		}
		var hook *Hook
		if hookTarget != "" {
			hook = &Hook{Target: hookTarget, Forwarding: true, AllowForwarding: true}
		}
		r := gate.Route{User: "alice", Target: tgt, Login: login, Raw: raw, Node: node, Gate: isGate}
		if node != 0 {
			r.UID = 1000
		}
		d := Decide(snap, s, r, bad, hook)
		n := 0
		for _, b := range []bool{d.Gate, d.Err != nil, d.Permit.Target.Name != ""} {
			if b {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("decision is not exactly one thing: %+v", d)
		}
		if d.Err != nil && d.Err.UserMessage() == "" {
			t.Fatal("refusal without a line")
		}
		p := d.Permit
		if p.Target.Name == "" {
			return
		}
		if noFwd && p.Forwarding {
			t.Fatal("forwarding despite the certificate")
		}
		if hook != nil {
			if p.Target.Name != hookTarget {
				t.Fatalf("webhook chose %q, got %q", hookTarget, p.Target.Name)
			}
			return
		}
		if _, ok := Permitted(snap.Reachable(), p.Target.Name, p.Login); !ok {
			t.Fatalf("permit outside the grants: %+v", p)
		}
		// The controls are those of a grant that opens this target as this
		// login: a flag only if every grant without a command sets it, a
		// command only if no such grant exists.
		freeMatch := false
		for _, g := range snap.Grants {
			if (g.Target != p.Target.Name && g.Env != p.Target.Env) || (g.Login != p.Login && (g.Login != "" || p.Target.Login != p.Login)) {
				continue
			}
			if g.Controls.Command == "" {
				freeMatch = true
				if p.Controls.NoShell && !g.Controls.NoShell || p.Controls.NoSFTP && !g.Controls.NoSFTP {
					t.Fatalf("a flag %+v that grant %+v does not set", p.Controls, g)
				}
			}
		}
		if freeMatch == (p.Controls.Command != "") {
			t.Fatalf("command %q with a free grant %v", p.Controls.Command, freeMatch)
		}
		if p.Target.Name == "secret" {
			t.Fatal("ungranted target permitted")
		}
	})
}
