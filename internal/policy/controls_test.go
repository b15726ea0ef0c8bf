package policy

import (
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

func TestGrantControls(t *testing.T) {
	web := gate.Target{Name: "web-1", Env: "prod", Login: "www"}
	def := Sessions{MaxSession: 8 * time.Hour, IdleTimeout: 15 * time.Minute}
	g := func(c gate.Controls) gate.Grant { return gate.Grant{User: "alice", Target: "web-1", Controls: c} }
	env := func(c gate.Controls) gate.Grant { return gate.Grant{User: "alice", Env: "prod", Controls: c} }
	all := gate.Controls{NoShell: true, NoExec: true, NoSFTP: true, NoSCP: true, NoRsync: true}
	tests := []struct {
		name   string
		grants []gate.Grant
		login  string
		def    Sessions
		want   gate.Controls
	}{
		{"no controls: the defaults", []gate.Grant{g(gate.Controls{})}, "www", def, gate.Controls{MaxSession: 8 * time.Hour, IdleTimeout: 15 * time.Minute}},
		{"no defaults, no limits", []gate.Grant{g(gate.Controls{})}, "www", Sessions{}, gate.Controls{}},
		{"no-shell", []gate.Grant{g(gate.Controls{NoShell: true})}, "www", Sessions{}, gate.Controls{NoShell: true}},
		{"no-exec", []gate.Grant{g(gate.Controls{NoExec: true})}, "www", Sessions{}, gate.Controls{NoExec: true}},
		{"no-sftp", []gate.Grant{g(gate.Controls{NoSFTP: true})}, "www", Sessions{}, gate.Controls{NoSFTP: true}},
		{"no-scp", []gate.Grant{g(gate.Controls{NoSCP: true})}, "www", Sessions{}, gate.Controls{NoSCP: true}},
		{"no-rsync", []gate.Grant{g(gate.Controls{NoRsync: true})}, "www", Sessions{}, gate.Controls{NoRsync: true}},
		{"all five flags", []gate.Grant{g(all)}, "www", Sessions{}, all},
		{"a grant's limits beat the defaults", []gate.Grant{g(gate.Controls{MaxSession: time.Hour, IdleTimeout: time.Minute})}, "www", def,
			gate.Controls{MaxSession: time.Hour, IdleTimeout: time.Minute}},
		{"two grants: a flag holds only if both set it", []gate.Grant{g(gate.Controls{NoShell: true, NoSFTP: true}), env(gate.Controls{NoSFTP: true, NoSCP: true})}, "www", Sessions{},
			gate.Controls{NoSFTP: true}},
		{"two grants: the longest limit", []gate.Grant{g(gate.Controls{MaxSession: time.Hour, IdleTimeout: 10 * time.Minute}), env(gate.Controls{MaxSession: 2 * time.Hour, IdleTimeout: time.Minute})}, "www", Sessions{},
			gate.Controls{MaxSession: 2 * time.Hour, IdleTimeout: 10 * time.Minute}},
		{"an unset limit is the default, which may be longer", []gate.Grant{g(gate.Controls{MaxSession: time.Hour}), env(gate.Controls{})}, "www", def,
			gate.Controls{MaxSession: 8 * time.Hour, IdleTimeout: 15 * time.Minute}},
		{"an unset limit with no default: unlimited wins", []gate.Grant{g(gate.Controls{MaxSession: time.Hour}), env(gate.Controls{})}, "www", Sessions{}, gate.Controls{}},
		{"forced command", []gate.Grant{g(gate.Controls{Command: "uptime"})}, "www", Sessions{}, gate.Controls{Command: "uptime"}},
		{"a grant without a command beats a forced one", []gate.Grant{g(gate.Controls{Command: "uptime", MaxSession: time.Hour}), env(gate.Controls{NoShell: true})}, "www", Sessions{},
			gate.Controls{NoShell: true}},
		{"all forced: the first grant's command", []gate.Grant{g(gate.Controls{Command: "uptime"}), env(gate.Controls{Command: "date"})}, "www", Sessions{}, gate.Controls{Command: "uptime"}},
		{"a grant for another login does not count", []gate.Grant{g(gate.Controls{}), {User: "alice", Target: "web-1", Login: "root", Controls: all}}, "root", Sessions{}, all},
		{"a grant for the default login does not count for root", []gate.Grant{g(all), {User: "alice", Target: "web-1", Login: "root"}}, "root", Sessions{}, gate.Controls{}},
		{"an explicit login equal to the default counts", []gate.Grant{g(all), {User: "alice", Target: "web-1", Login: "www", Controls: gate.Controls{NoShell: true}}}, "www", Sessions{},
			gate.Controls{NoShell: true}},
		{"grants on other targets do not count", []gate.Grant{g(gate.Controls{NoShell: true}), {User: "alice", Target: "db-1"}, {User: "alice", Env: "data"}}, "www", Sessions{},
			gate.Controls{NoShell: true}},
		{"upload-only", []gate.Grant{g(gate.Controls{UploadOnly: true})}, "www", Sessions{}, gate.Controls{UploadOnly: true}},
		{"download-only", []gate.Grant{g(gate.Controls{DownloadOnly: true})}, "www", Sessions{}, gate.Controls{DownloadOnly: true}},
		{"upload-only and download-only grants: both directions", []gate.Grant{g(gate.Controls{UploadOnly: true}), env(gate.Controls{DownloadOnly: true})}, "www", Sessions{}, gate.Controls{}},
		{"upload-only beside a free grant: both directions", []gate.Grant{g(gate.Controls{UploadOnly: true}), env(gate.Controls{})}, "www", Sessions{}, gate.Controls{}},
		{"agent forwarding and watch: any grant", []gate.Grant{g(gate.Controls{AgentForwarding: true}), env(gate.Controls{Watch: true})}, "www", Sessions{},
			gate.Controls{AgentForwarding: true, Watch: true}},
		{"agent forwarding of a grant for another login does not count", []gate.Grant{g(gate.Controls{}), {User: "alice", Target: "web-1", Login: "root", Controls: gate.Controls{AgentForwarding: true}}}, "www", Sessions{}, gate.Controls{}},
		{"no grant: the defaults", nil, "www", def, gate.Controls{MaxSession: 8 * time.Hour, IdleTimeout: 15 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := GrantControls(tt.grants, web, tt.login, tt.def); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMayWatch(t *testing.T) {
	web := gate.Target{Name: "web-1", Env: "prod"}
	w := gate.Controls{Watch: true}
	tests := []struct {
		name   string
		grants []gate.Grant
		want   bool
	}{
		{"no grants", nil, false},
		{"grant without --watch", []gate.Grant{{Target: "web-1"}}, false},
		{"target grant with --watch", []gate.Grant{{Target: "web-1", Controls: w}}, true},
		{"env grant with --watch", []gate.Grant{{Env: "prod", Controls: w}}, true},
		{"another login's grant counts", []gate.Grant{{Target: "web-1", Login: "www"}, {Target: "web-1", Login: "root", Controls: w}}, true},
		{"--watch on another target", []gate.Grant{{Target: "web-2", Controls: w}, {Target: "web-1"}}, false},
		{"--watch on another env", []gate.Grant{{Env: "staging", Controls: w}}, false},
	}
	for _, tt := range tests {
		if got := MayWatch(tt.grants, web); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
