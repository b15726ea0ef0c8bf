package broker

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/route"
	"github.com/sshgate/sshgate/internal/sshd"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/target"
)

// In-process tests of the broker: a real x/crypto client, the real accept
// loop and broker, a store held in memory and a target that is an
// in-process SSH server answering exec requests. They check that every
// channel reads the one decision and that the decision is computed once.

type memStore struct {
	targets []gate.Target
	grants  []gate.Grant
	infos   []gate.TargetInfo
	users   map[string]gate.UserInfo
	reads   atomic.Int32 // ListTargets calls
}

func (m *memStore) ListTargets(context.Context) ([]gate.Target, error) {
	m.reads.Add(1)
	return m.targets, nil
}
func (m *memStore) ListGrants(_ context.Context, user string) ([]gate.Grant, error) {
	var out []gate.Grant
	for _, g := range m.grants {
		if g.User == user {
			out = append(out, g)
		}
	}
	return out, nil
}
func (m *memStore) ListTargetInfo(context.Context) ([]gate.TargetInfo, error) { return m.infos, nil }
func (m *memStore) GetUserInfo(_ context.Context, user string) (gate.UserInfo, error) {
	if u, ok := m.users[user]; ok {
		return u, nil
	}
	return gate.UserInfo{}, store.ErrNotFound
}
func (m *memStore) EnvGroups(context.Context) (map[string]string, error) { return nil, nil }
func (m *memStore) GetUser(context.Context, string) (gate.User, error)   { return gate.User{}, nil }
func (m *memStore) ListKeys(context.Context, string) ([]gate.Key, error) { return nil, nil }
func (m *memStore) AddKey(context.Context, gate.Key) error               { return nil }
func (m *memStore) RemoveKey(context.Context, string, string) error      { return nil }

// echoTarget is an SSH server on net.Pipe: exec "exit N" exits N, any
// other command prints "ran: CMD" and exits 0; any other channel (a
// forward) is recorded in opened and refused.
type echoTarget struct {
	t      *testing.T
	signer ssh.Signer
	opens  atomic.Int32
	logins sync.Map // login -> true

	mu     sync.Mutex
	opened []openedChannel
}

// openedChannel is a channel open other than a session a target received.
type openedChannel struct {
	Type  string
	Extra []byte
}

func (e *echoTarget) forwards() []openedChannel {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]openedChannel(nil), e.opened...)
}

func (e *echoTarget) Open(ctx context.Context, req target.Request) (*target.Upstream, error) {
	e.opens.Add(1)
	e.logins.Store(req.Login, true)
	client, server := net.Pipe()
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(e.signer)
	go func() {
		sc, chans, reqs, err := ssh.NewServerConn(server, cfg)
		if err != nil {
			return
		}
		defer sc.Close()
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			if nc.ChannelType() != "session" {
				e.mu.Lock()
				e.opened = append(e.opened, openedChannel{nc.ChannelType(), nc.ExtraData()})
				e.mu.Unlock()
				_ = nc.Reject(ssh.Prohibited, "no")
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go func() {
				for r := range creqs {
					if r.Type != "exec" {
						_ = r.Reply(r.Type == "env" || r.Type == "pty-req", nil)
						continue
					}
					_ = r.Reply(true, nil)
					cmd := string(r.Payload[4:])
					if cmd == "sleep" { // an idle session: runs until the channel closes
						continue
					}
					status := uint32(0)
					if n, err := fmt.Sscanf(cmd, "exit %d", &status); n != 1 || err != nil {
						fmt.Fprintf(ch, "ran: %s as %s\n", cmd, req.Login)
					}
					_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{status}))
					_ = ch.Close()
				}
			}()
		}
	}()
	return &target.Upstream{Conn: client, Client: &ssh.ClientConfig{User: req.Login, HostKeyCallback: ssh.FixedHostKey(e.signer.PublicKey())}}, nil
}

func newSigner(t *testing.T) ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type fixture struct {
	addr string
	st   *memStore
	tgt  *echoTarget
	cert *gate.CertLogin // applied to every login
	totp *gate.TOTPProof // applied to every login; with it the second factor is on
	sf   *countModes
}

// countModes is a second factor that counts the TOTP mode reads.
type countModes struct{ reads atomic.Int32 }

func (m *countModes) TargetMode(context.Context, gate.Target) string {
	m.reads.Add(1)
	return gate.TOTPAlways
}
func (m *countModes) Enrolled(context.Context, string) (bool, error)              { return true, nil }
func (m *countModes) Enrol(context.Context, string, string, string) (bool, error) { return false, nil }

func startBroker(t *testing.T, cert *gate.CertLogin) *fixture {
	return startBrokerTOTP(t, cert, nil)
}

func startBrokerTOTP(t *testing.T, cert *gate.CertLogin, totp *gate.TOTPProof) *fixture {
	t.Helper()
	return startBrokerWith(t, cert, totp, nil)
}

// startBrokerWith starts the fixture's broker with deps changed by with (nil: none).
func startBrokerWith(t *testing.T, cert *gate.CertLogin, totp *gate.TOTPProof, with func(*Deps)) *fixture {
	t.Helper()
	f := &fixture{
		st: &memStore{
			targets: []gate.Target{
				{Name: "web-1", Env: "prod", Login: "www", Kind: gate.KindUpstream},
				{Name: "db-1", Env: "data", Login: "postgres", Kind: gate.KindUpstream},
			},
			infos:  []gate.TargetInfo{{Target: "web-1", ID: 1, Aliases: []string{"www"}}, {Target: "db-1", ID: 2}},
			grants: []gate.Grant{{User: "alice", Env: "prod"}, {User: "alice", Target: "web-1", Login: "root", Forwarding: true}},
			users:  map[string]gate.UserInfo{"alice": {User: "alice", UID: 1000}},
		},
		tgt:  &echoTarget{t: t, signer: newSigner(t)},
		cert: cert,
		totp: totp,
		sf:   &countModes{},
	}
	var cfg config.Config
	cfg.Limits.MaxSessions = 10
	cfg.Limits.UpstreamTimeout = config.Duration(5 * time.Second)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deps := Deps{Config: cfg, Store: f.st, Backends: map[string]target.Backend{gate.KindUpstream: f.tgt}, Log: log}
	if totp != nil {
		deps.TOTP = f.sf
	}
	if with != nil {
		with(&deps)
	}
	br, err := New(deps)
	if err != nil {
		t.Fatal(err)
	}
	sc := &ssh.ServerConfig{PasswordCallback: func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		r, err := route.Parse(m.User())
		if err != nil && !errors.Is(err, route.ErrInvalidTarget) {
			return nil, errors.New("denied")
		}
		s := &gate.Session{ConnID: gate.ConnIDOf(m), Identity: gate.Identity{User: r.User, Method: "password"},
			Username: m.User(), Route: r, BadTarget: err != nil, Cert: f.cert}
		if f.totp != nil {
			s.TOTP = *f.totp
		}
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
	return f
}

func (f *fixture) dial(t *testing.T, user string) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", f.addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password("x")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// run execs cmd and returns stdout, stderr and the exit status.
func run(t *testing.T, c *ssh.Client, cmd string) (string, string, int) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errOut bytes.Buffer
	s.Stdout, s.Stderr = &out, &errOut
	err = s.Run(cmd)
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &ee):
		return out.String(), errOut.String(), ee.ExitStatus()
	}
	t.Fatalf("run %q: %v", cmd, err)
	return "", "", -1
}

func TestBrokerSessions(t *testing.T) {
	f := startBroker(t, nil)
	tests := []struct {
		user, cmd string
		out, err  string
		status    int
	}{
		{"alice+web-1", "hostname", "ran: hostname as www\n", "", 0},
		{"alice+www+root", "id", "ran: id as root\n", "", 0},
		{"alice+web-1", "exit 7", "", "", 7},
		{"alice+db-1", "id", "", "sshgate: target \"db-1\" not found or not permitted\n", 1},
		{"alice+nope", "id", "", "sshgate: target \"nope\" not found or not permitted\n", 1},
		{"alice+web-1+admin", "id", "", "sshgate: target \"web-1+admin\" not found or not permitted\n", 1},
		{"alice+Web!", "id", "", "sshgate: target \"Web!\" not found or not permitted\n", 1},
		{"alice", "bogus", "", "usage", 2},
	}
	for _, tt := range tests {
		t.Run(tt.user+" "+tt.cmd, func(t *testing.T) {
			out, errOut, status := run(t, f.dial(t, tt.user), tt.cmd)
			if out != tt.out || !strings.Contains(errOut, tt.err) || (tt.err == "" && errOut != "") || status != tt.status {
				t.Fatalf("got out %q err %q status %d; want %q %q %d", out, errOut, status, tt.out, tt.err, tt.status)
			}
		})
	}
}

// The decision is computed once per connection: three sessions and a
// refused forward read the targets once and dial the target once.
func TestOneDecisionPerConnection(t *testing.T) {
	f := startBroker(t, nil)
	c := f.dial(t, "alice+web-1")
	for i := 0; i < 3; i++ {
		if out, _, st := run(t, c, "uptime"); out != "ran: uptime as www\n" || st != 0 {
			t.Fatalf("session %d: %q %d", i, out, st)
		}
	}
	if _, err := c.Dial("tcp", "127.0.0.1:5432"); err == nil || !strings.Contains(err.Error(), "port forwarding is not permitted") {
		t.Fatalf("forward without a forwarding grant: %v", err)
	}
	if n := f.st.reads.Load(); n != 1 {
		t.Fatalf("targets read %d times on one connection, want 1", n)
	}
	if n := f.tgt.opens.Load(); n != 1 {
		t.Fatalf("target opened %d times, want 1", n)
	}
}

// A certificate without permit-port-forwarding narrows the grant; its
// force-command replaces what the session asked for.
func TestCertificateRestrictions(t *testing.T) {
	f := startBroker(t, &gate.CertLogin{PTY: false, Forwarding: false, ForceCommand: "forced", HasForce: true})
	c := f.dial(t, "alice+web-1+root")
	if out, _, st := run(t, c, "anything"); out != "ran: forced as root\n" || st != 0 {
		t.Fatalf("force-command: %q %d", out, st)
	}
	if _, err := c.Dial("tcp", "127.0.0.1:5432"); err == nil || !strings.Contains(err.Error(), "not permitted") {
		t.Fatalf("forward despite the certificate: %v", err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err == nil {
		t.Fatal("a pty was granted to a certificate without permit-pty")
	}
}

// Without a target the gate's own commands answer; forwarding needs a target.
func TestGateCommands(t *testing.T) {
	f := startBroker(t, nil)
	c := f.dial(t, "alice")
	out, errOut, st := run(t, c, "ls")
	if st != 0 || errOut != "" || !strings.Contains(out, "web-1") || strings.Contains(out, "db-1") {
		t.Fatalf("ls: %q %q %d", out, errOut, st)
	}
	if _, err := c.Dial("tcp", "127.0.0.1:22"); err == nil || !strings.Contains(err.Error(), "needs a target") {
		t.Fatalf("forward without a target: %v", err)
	}
	if f.tgt.opens.Load() != 0 {
		t.Fatal("a gate session dialled a target")
	}
}

// The connection's own target is checked against the TOTP mode auth read at
// login for it, not read again; a login whose mode was decided for another
// target (or none) reads the target's mode once.
func TestTOTPModeReadOnce(t *testing.T) {
	for _, tt := range []struct {
		proof  gate.TOTPProof
		reads  int32
		status int
	}{
		{gate.TOTPProof{Recorded: true, Proof: "code", Mode: gate.TOTPAlways, Target: "web-1"}, 0, 0},
		{gate.TOTPProof{Recorded: true, Proof: "code", Mode: gate.TOTPAlways, Target: ""}, 1, 0},
		{gate.TOTPProof{Recorded: true, Proof: "none", Mode: gate.TOTPNever, Target: "db-1"}, 1, 1},
	} {
		f := startBrokerTOTP(t, nil, &tt.proof)
		_, _, st := run(t, f.dial(t, "alice+web-1"), "id")
		if st != tt.status || f.sf.reads.Load() != tt.reads {
			t.Errorf("proof %+v: status %d (want %d), mode reads %d (want %d)", tt.proof, st, tt.status, f.sf.reads.Load(), tt.reads)
		}
	}
}
