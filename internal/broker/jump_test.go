package broker

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/webhook"
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

// fakeJumpHosts presents one key for every name and records the names.
type fakeJumpHosts struct {
	key   ssh.Signer
	names chan string
}

func (f *fakeJumpHosts) Signers(name string) ([]ssh.Signer, error) {
	f.names <- name
	return []ssh.Signer{f.key}, nil
}
func (f *fakeJumpHosts) KnownHosts([]string) []string { return nil }

// forceTarget is a config webhook that sends every connection to one target.
type forceTarget string

func (f forceTarget) Configure(context.Context, webhook.ConfigRequest) (webhook.ConfigReply, error) {
	return webhook.ConfigReply{Target: string(f)}, nil
}

// jumpTo opens the direct-tcpip ssh -J opens and runs cmd over the inner
// SSH connection as login; the open's error when refused.
func jumpTo(t *testing.T, c *ssh.Client, host, login, cmd string, hostKey ssh.PublicKey) (string, error) {
	t.Helper()
	nc, err := c.Dial("tcp", net.JoinHostPort(host, "22"))
	if err != nil {
		return "", err
	}
	defer nc.Close()
	cc, chans, reqs, err := ssh.NewClientConn(nc, host+":22", &ssh.ClientConfig{User: login, Timeout: 5 * time.Second,
		HostKeyCallback: ssh.FixedHostKey(hostKey)})
	if err != nil {
		t.Fatalf("inner handshake to %s: %v", host, err)
	}
	inner := ssh.NewClient(cc, chans, reqs)
	defer inner.Close()
	out, _, _ := run(t, inner, cmd)
	return out, nil
}

// The inner connection of ssh -J is served as USER+TARGET+LOGIN; only names
// of targets the decision lands on are presented. A config webhook that
// names the target makes the outer connection a target's, where -J is a
// port forward (refused without --forwarding): the gate never presents
// itself as the asked-for name.
func TestJumpServedAsTarget(t *testing.T) {
	hosts := &fakeJumpHosts{key: newSigner(t), names: make(chan string, 10)}
	f := startBrokerWith(t, nil, nil, func(d *Deps) { d.Jump = Jump{Hosts: hosts} })
	c := f.dial(t, "alice")
	for _, tc := range []struct{ host, login, want string }{{"web-1", "root", "ran: whoami as root"}, {"www", "alice", "ran: whoami as www"}} {
		out, err := jumpTo(t, c, tc.host, tc.login, "whoami", hosts.key.PublicKey())
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("jump to %s as %s: %q %v, want %q", tc.host, tc.login, out, err, tc.want)
		}
		if got := <-hosts.names; got != tc.host {
			t.Errorf("presented as %q, want %q", got, tc.host)
		}
	}
	for _, host := range []string{"db-1", "nosuch", "gate"} {
		if _, err := jumpTo(t, c, host, "root", "true", hosts.key.PublicKey()); err == nil {
			t.Errorf("jump to %s accepted", host)
		}
	}

	hooked := startBrokerWith(t, nil, nil, func(d *Deps) {
		d.Jump = Jump{Hosts: hosts}
		d.Hook = &ConfigHook{Client: forceTarget("web-1")}
	})
	hc := hooked.dial(t, "alice")
	for _, host := range []string{"db-1", "github.com"} {
		_, err := jumpTo(t, hc, host, "root", "true", hosts.key.PublicKey())
		if err == nil || !strings.Contains(err.Error(), "port forwarding is not permitted for target web-1") {
			t.Errorf("jump to %s with the webhook sending it to web-1: %v, want refused", host, err)
		}
	}
	select {
	case name := <-hosts.names:
		t.Errorf("a host key was made for %q", name)
	default:
	}
}
