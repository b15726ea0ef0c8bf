package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/route"
	"github.com/sshgate/sshgate/internal/sshd"
	"github.com/sshgate/sshgate/internal/target"
)

// startReachBroker serves web-1 to alice as root with a forwarding grant
// limited to forwardTo (nil: anywhere), and as www (the prod grant) without
// forwarding, recording audit events.
func startReachBroker(t *testing.T, forwardTo []string) (*fixture, *auditBuf) {
	t.Helper()
	au := &auditBuf{}
	f := &fixture{
		st: &memStore{
			targets: []gate.Target{{Name: "web-1", Env: "prod", Login: "www", Kind: gate.KindUpstream}},
			grants: []gate.Grant{{User: "alice", Env: "prod"},
				{User: "alice", Target: "web-1", Login: "root", Forwarding: true, ForwardTo: forwardTo}},
			infos: []gate.TargetInfo{{Target: "web-1", ID: 1}},
			users: map[string]gate.UserInfo{"alice": {User: "alice", UID: 1000}},
		},
		tgt: &echoTarget{t: t, signer: newSigner(t)},
	}
	var cfg config.Config
	cfg.Limits.MaxSessions = 10
	cfg.Limits.UpstreamTimeout = config.Duration(5 * time.Second)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	br, err := New(Deps{Config: cfg, Store: f.st, Backends: map[string]target.Backend{gate.KindUpstream: f.tgt}, Log: log, Audit: au})
	if err != nil {
		t.Fatal(err)
	}
	sc := &ssh.ServerConfig{PasswordCallback: func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		r, err := route.Parse(m.User())
		if err != nil {
			return nil, errors.New("denied")
		}
		s := &gate.Session{ConnID: gate.ConnIDOf(m), Identity: gate.Identity{User: r.User, Method: "password"}, Username: m.User(), Route: r}
		return &ssh.Permissions{ExtraData: map[any]any{gate.SessionKey{}: s}}, nil
	}}
	sc.AddHostKey(newSigner(t))
	srv := sshd.New(sc, sshd.Limits{LoginGrace: 10 * time.Second, MaxUnauthenticated: 10, MaxUnauthPerSource: 10}, nil, br.Handle, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	f.addr = ln.Addr().String()
	return f, au
}

func (a *auditBuf) forwardEvents() []audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Event
	for _, e := range a.evs {
		if e.Type == audit.TypeForward {
			out = append(out, e)
		}
	}
	return out
}

// openTCP opens a direct-tcpip channel to host:port exactly as given (no
// resolving on the client side either) and returns the open error.
func openTCP(c *ssh.Client, host string, port uint32) error {
	ch, _, err := c.OpenChannel("direct-tcpip", ssh.Marshal(&directTCPIPMsg{Host: host, Port: port, OriginHost: "127.0.0.1", OriginPort: 40000}))
	if err == nil {
		ch.Close()
	}
	return err
}

func openSocket(c *ssh.Client, path string) error {
	ch, _, err := c.OpenChannel(streamLocal, ssh.Marshal(&streamLocalMsg{Path: path}))
	if err == nil {
		ch.Close()
	}
	return err
}

// waitEvents polls until the audit holds n forward events.
func waitEvents(t *testing.T, au *auditBuf, n int) []audit.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := au.forwardEvents()
		if len(evs) >= n || time.Now().After(deadline) {
			if len(evs) != n {
				t.Fatalf("%d forward events, want %d: %+v", len(evs), n, evs)
			}
			return evs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A grant's --forward-to list decides which local forwards reach the target:
// anything else is refused by the gate, administratively prohibited with a
// message naming the destination, before the target hears of it, and every
// attempt is audited.
func TestForwardReach(t *testing.T) {
	f, au := startReachBroker(t, []string{"10.1.2.0/24:5432", "db.internal:5432", "/run/app.sock"})
	c := f.dial(t, "alice+web-1+root")
	cases := []struct {
		host    string // "/..." a unix socket
		port    uint32
		allowed bool
	}{
		{"169.254.169.254", 80, false},
		{"10.1.2.7", 5432, true},
		{"10.1.2.7", 22, false},
		{"10.1.3.7", 5432, false},
		{"db.internal", 5432, true},
		{"DB.Internal.", 5432, true},
		{"db.internal.evil.example", 5432, false},
		{"2852039166", 80, false}, // 169.254.169.254 as a number some resolvers read
		{"localhost", 5432, false},
		{"/run/app.sock", 0, true},
		{"/run/../run/app.sock", 0, false},
		{"/var/run/docker.sock", 0, false},
	}
	var want []openedChannel
	for i, tc := range cases {
		var err error
		dest := tc.host
		if strings.HasPrefix(tc.host, "/") {
			err = openSocket(c, tc.host)
			if tc.allowed {
				want = append(want, openedChannel{streamLocal, ssh.Marshal(&streamLocalMsg{Path: tc.host})})
			}
		} else {
			err = openTCP(c, tc.host, tc.port)
			dest = net.JoinHostPort(tc.host, itoa(tc.port))
			if tc.allowed {
				want = append(want, openedChannel{"direct-tcpip", ssh.Marshal(&directTCPIPMsg{Host: tc.host, Port: tc.port, OriginHost: "127.0.0.1", OriginPort: 40000})})
			}
		}
		var oe *ssh.OpenChannelError
		if !errors.As(err, &oe) {
			t.Fatalf("%s: open: %v, want a refusal (the test target refuses all)", dest, err)
		}
		if tc.allowed {
			if oe.Message != "no" {
				t.Errorf("%s: refused by the gate (%q), want it to reach the target", dest, oe.Message)
			}
		} else if wantMsg := "forwarding to " + dest + " is not permitted for target web-1"; oe.Reason != ssh.Prohibited || oe.Message != wantMsg {
			t.Errorf("%s: %v %q, want administratively prohibited %q", dest, oe.Reason, oe.Message, wantMsg)
		}
		evs := waitEvents(t, au, i+1)
		e := evs[i]
		wantResult, wantReason := "failed", "" // the test target refuses what reaches it
		if !tc.allowed {
			wantResult, wantReason = "denied", reasonNotAllowed
		}
		if e.Destination != dest || e.Result != wantResult || e.Reason != wantReason || e.Target != "web-1" || e.Login != "root" || e.User != "alice" {
			t.Errorf("%s: audit %+v, want destination %q result %q reason %q", dest, e, dest, wantResult, wantReason)
		}
	}
	got := f.tgt.forwards()
	if len(got) != len(want) {
		t.Fatalf("the target saw %d forwards, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Type != want[i].Type || string(got[i].Extra) != string(want[i].Extra) {
			t.Errorf("forward %d: the target saw %s %q, want %s %q", i, got[i].Type, got[i].Extra, want[i].Type, want[i].Extra)
		}
	}
}

// Without --forward-to a forwarding grant reaches any host and port (as
// before), never a unix socket; a login without forwarding reaches nothing.
func TestForwardReachDefault(t *testing.T) {
	f, au := startReachBroker(t, nil)
	root := f.dial(t, "alice+web-1+root")
	if err := openTCP(root, "169.254.169.254", 80); err == nil || !strings.Contains(err.Error(), `("no")`) {
		t.Errorf("a grant without --forward-to: %v, want the target's own refusal", err)
	}
	if err := openSocket(root, "/var/run/docker.sock"); err == nil || !strings.Contains(err.Error(), "forwarding to /var/run/docker.sock is not permitted for target web-1") {
		t.Errorf("a unix socket without --forward-to: %v", err)
	}
	www := f.dial(t, "alice+web-1+www")
	if err := openTCP(www, "10.0.0.1", 80); err == nil || !strings.Contains(err.Error(), "port forwarding is not permitted for target web-1") {
		t.Errorf("a login without forwarding: %v", err)
	}
	if got := f.tgt.forwards(); len(got) != 1 || got[0].Type != "direct-tcpip" {
		t.Errorf("the target saw %q, want only the first forward", got)
	}
	evs := waitEvents(t, au, 3)
	for i, want := range []struct{ result, reason, login string }{
		{"failed", "", "root"}, {"denied", reasonNotAllowed, "root"}, {"denied", reasonNotPermitted, "www"},
	} {
		if evs[i].Result != want.result || evs[i].Reason != want.reason || evs[i].Login != want.login {
			t.Errorf("event %d: %+v, want %+v", i, evs[i], want)
		}
	}
}

func itoa(n uint32) string { return strconv.Itoa(int(n)) }

// Inside ssh -J's inner connection (served as USER+TARGET+LOGIN) a local
// forward meets the same reach.
func TestForwardReachThroughJump(t *testing.T) {
	hosts := &fakeJumpHosts{key: newSigner(t), names: make(chan string, 10)}
	f := startBrokerWith(t, nil, nil, func(d *Deps) {
		d.Jump = Jump{Hosts: hosts}
		d.Store.(*memStore).grants[1].ForwardTo = []string{"10.1.2.3:5432"}
	})
	c := f.dial(t, "alice")
	nc, err := c.Dial("tcp", "web-1:22")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cc, chans, reqs, err := ssh.NewClientConn(nc, "web-1:22", &ssh.ClientConfig{User: "root", Timeout: 5 * time.Second,
		HostKeyCallback: ssh.FixedHostKey(hosts.key.PublicKey())})
	if err != nil {
		t.Fatal(err)
	}
	inner := ssh.NewClient(cc, chans, reqs)
	defer inner.Close()
	if err := openTCP(inner, "169.254.169.254", 80); err == nil || !strings.Contains(err.Error(), "forwarding to 169.254.169.254:80 is not permitted for target web-1") {
		t.Errorf("outside the reach through -J: %v", err)
	}
	if err := openTCP(inner, "10.1.2.3", 5432); err == nil || !strings.Contains(err.Error(), `("no")`) {
		t.Errorf("inside the reach through -J: %v, want the target's own refusal", err)
	}
	if got := f.tgt.forwards(); len(got) != 1 || !strings.Contains(string(got[0].Extra), "10.1.2.3") {
		t.Errorf("the target saw %q, want only 10.1.2.3", got)
	}
}

// A client opening refused forwards in a loop cannot fill the audit log:
// the first auditedRefusals of a connection are written one by one, the
// rest as one "suppressed" event with their count when the connection ends.
func TestForwardReachRefusalsBounded(t *testing.T) {
	f, au := startReachBroker(t, []string{"10.1.2.0/24:5432"})
	c := f.dial(t, "alice+web-1+root")
	const opens = 1000
	for i := 0; i < opens; i++ {
		if err := openTCP(c, "169.254.169.254", 80); err == nil {
			t.Fatal("a forward outside --forward-to was opened")
		}
	}
	_ = c.Close()
	deadline := time.Now().Add(10 * time.Second)
	var evs []audit.Event
	for {
		evs = au.forwardEvents()
		if n := len(evs); n > 0 && evs[n-1].Result == "suppressed" || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(evs) != auditedRefusals+1 {
		t.Fatalf("%d forward events for %d refused opens, want %d one by one and one summary", len(evs), opens, auditedRefusals)
	}
	for i, e := range evs[:auditedRefusals] {
		if e.Result != "denied" || e.Reason != reasonNotAllowed || e.Destination != "169.254.169.254:80" {
			t.Fatalf("event %d: %+v, want a denied forward to 169.254.169.254:80", i, e)
		}
	}
	last := evs[auditedRefusals]
	if last.Count == nil || *last.Count != opens-auditedRefusals || last.Target != "web-1" || last.Login != "root" {
		t.Errorf("summary %+v, want result suppressed, count %d, target web-1, login root", last, opens-auditedRefusals)
	}
}
