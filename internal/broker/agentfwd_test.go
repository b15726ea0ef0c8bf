package broker

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/route"
	"github.com/sshgate/sshgate/internal/sshd"
	"github.com/sshgate/sshgate/internal/target"
)

// agentTarget is an SSH server on net.Pipe that records whether a session
// asked for agent forwarding; exec "agent" opens an auth-agent@openssh.com
// channel back and prints the keys the agent lists ("refused: ..." when
// the channel is refused), whatever the session asked.
type agentTarget struct {
	signer ssh.Signer
	mu     sync.Mutex
	asked  int           // agent requests seen
	conns  []ssh.Conn    // server side of each connection
	after  chan struct{} // closed by the test: open an agent channel after the session ended
}

func (a *agentTarget) Open(ctx context.Context, req target.Request) (*target.Upstream, error) {
	client, server := net.Pipe()
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(a.signer)
	go func() {
		sc, chans, reqs, err := ssh.NewServerConn(server, cfg)
		if err != nil {
			return
		}
		defer sc.Close()
		a.mu.Lock()
		a.conns = append(a.conns, sc)
		a.mu.Unlock()
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go func() {
				for r := range creqs {
					switch r.Type {
					case "auth-agent-req@openssh.com":
						a.mu.Lock()
						a.asked++
						a.mu.Unlock()
						_ = r.Reply(true, nil)
					case "exec":
						_ = r.Reply(true, nil)
						fmt.Fprint(ch, listAgent(sc))
						_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{0}))
						_ = ch.Close()
					default:
						_ = r.Reply(false, nil)
					}
				}
			}()
		}
	}()
	return &target.Upstream{Conn: client, Client: &ssh.ClientConfig{User: req.Login, HostKeyCallback: ssh.FixedHostKey(a.signer.PublicKey())}}, nil
}

// listAgent opens an agent channel on sc and lists the agent's keys.
func listAgent(sc ssh.Conn) string {
	ch, reqs, err := sc.OpenChannel("auth-agent@openssh.com", nil)
	if err != nil {
		return "refused: " + err.Error()
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	keys, err := sshagent.NewClient(ch).List()
	if err != nil {
		return "list: " + err.Error()
	}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k.Comment + "\n")
	}
	return b.String()
}

type auditBuf struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (a *auditBuf) Emit(e audit.Event) { a.mu.Lock(); a.evs = append(a.evs, e); a.mu.Unlock() }
func (a *auditBuf) Health() (bool, <-chan struct{}) {
	return true, make(chan struct{})
}

// okEvent is the first event of evs with result ok, or a zero event.
func okEvent(evs []audit.Event) audit.Event {
	for _, e := range evs {
		if e.Result == "ok" {
			return e
		}
	}
	return audit.Event{}
}

func (a *auditBuf) agentEvents() []audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Event
	for _, e := range a.evs {
		if e.Type == audit.TypeAgentChannel {
			out = append(out, e)
		}
	}
	return out
}

// startAgentBroker serves web-1 (a grant with --agent-forwarding) and db-1
// (a grant without) from an agentTarget.
func startAgentBroker(t *testing.T) (addr string, tgt *agentTarget, au *auditBuf) {
	t.Helper()
	st := &memStore{
		targets: []gate.Target{
			{Name: "web-1", Env: "prod", Login: "www", Kind: gate.KindUpstream},
			{Name: "db-1", Env: "data", Login: "postgres", Kind: gate.KindUpstream},
		},
		infos:  []gate.TargetInfo{{Target: "web-1", ID: 1}, {Target: "db-1", ID: 2}},
		grants: []gate.Grant{{User: "alice", Target: "web-1", Controls: gate.Controls{AgentForwarding: true}}, {User: "alice", Target: "db-1"}},
		users:  map[string]gate.UserInfo{"alice": {User: "alice", UID: 1000}},
	}
	tgt = &agentTarget{signer: newSigner(t)}
	au = &auditBuf{}
	var cfg config.Config
	cfg.Limits.MaxSessions = 10
	cfg.Limits.UpstreamTimeout = config.Duration(5 * time.Second)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	br, err := New(Deps{Config: cfg, Store: st, Backends: map[string]target.Backend{gate.KindUpstream: tgt}, Log: log, Audit: au})
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
	return ln.Addr().String(), tgt, au
}

// userWithAgent dials as user with a keyring holding one key named
// "alice-key", served to the gate's agent channels.
func userWithAgent(t *testing.T, addr, user string) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password("x")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	ring := sshagent.NewKeyring()
	if err := ring.Add(sshagent.AddedKey{PrivateKey: priv, Comment: "alice-key"}); err != nil {
		t.Fatal(err)
	}
	if err := sshagent.ForwardToAgent(c, ring); err != nil {
		t.Fatal(err)
	}
	return c
}

// runAgent runs exec "agent" in a session that asks for agent forwarding
// if forward; it returns the output and whether the request was accepted.
func runAgent(t *testing.T, c *ssh.Client, forward bool) (string, bool) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	accepted := false
	if forward {
		accepted = sshagent.RequestAgentForwarding(s) == nil
	}
	var stderr strings.Builder
	s.Stderr = &stderr
	out, err := s.Output("agent")
	if err != nil {
		t.Fatalf("exec: %v: %s", err, stderr.String())
	}
	return string(out), accepted
}

func TestAgentForwardingRelayed(t *testing.T) {
	addr, tgt, au := startAgentBroker(t)
	base := runtime.NumGoroutine()
	c := userWithAgent(t, addr, "alice+web-1")
	out, ok := runAgent(t, c, true)
	if !ok || out != "alice-key\n" {
		t.Fatalf("with the grant: accepted %v, target's agent listed %q", ok, out)
	}
	tgt.mu.Lock()
	asked := tgt.asked
	tgt.mu.Unlock()
	if asked != 1 {
		t.Fatalf("target saw %d agent requests, want 1", asked)
	}
	// A session that did not ask gets no agent, even on this connection;
	// nor does anything opened after the agent session ended.
	if out, _ := runAgent(t, c, false); !strings.HasPrefix(out, "refused: ") {
		t.Fatalf("agent channel without a request: %q", out)
	}
	tgt.mu.Lock()
	sc := tgt.conns[0]
	tgt.mu.Unlock()
	if got := listAgent(sc); !strings.HasPrefix(got, "refused: ") {
		t.Fatalf("agent channel after the session ended: %q", got)
	}
	// The relayed channel's event is written when its relay ends, which
	// may be after the session's output reached the client.
	evs := au.agentEvents()
	for wait := time.Now().Add(5 * time.Second); len(evs) < 3 && time.Now().Before(wait); evs = au.agentEvents() {
		time.Sleep(10 * time.Millisecond)
	}
	results := []string{}
	for _, e := range evs {
		results = append(results, e.Result+"/"+e.Reason)
		if e.Target != "web-1" || e.Login != "www" || e.ConnID == "" || e.User != "alice" || e.Channel != "auth-agent@openssh.com" {
			t.Errorf("agent.channel event lacks its fields: %+v", e)
		}
	}
	sort.Strings(results)
	if strings.Join(results, " ") != "ok/ refused/not_requested refused/not_requested" {
		t.Errorf("agent.channel events: %v", results)
	}
	if e := okEvent(evs); e.BytesIn == nil || *e.BytesIn == 0 || e.BytesOut == nil || *e.BytesOut == 0 {
		t.Errorf("relayed agent channel without byte counts: %+v", e)
	}
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		<-time.After(10 * time.Millisecond)
	}
}

func TestAgentForwardingRefusedWithoutGrant(t *testing.T) {
	addr, tgt, au := startAgentBroker(t)
	for _, user := range []string{"alice+db-1", "alice"} {
		c := userWithAgent(t, addr, user)
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := sshagent.RequestAgentForwarding(s); err == nil {
			t.Errorf("%s: agent request accepted without the grant", user)
		}
		s.Close()
		if user == "alice+db-1" {
			if out, _ := runAgent(t, c, false); !strings.HasPrefix(out, "refused: ") {
				t.Errorf("agent channel without the grant: %q", out)
			}
		}
	}
	tgt.mu.Lock()
	asked := tgt.asked
	tgt.mu.Unlock()
	if asked != 0 {
		t.Errorf("the target saw %d agent requests without the grant", asked)
	}
	if evs := au.agentEvents(); len(evs) != 1 || evs[0].Result != "refused" || evs[0].Reason != "not_permitted" || evs[0].Target != "db-1" {
		t.Errorf("agent.channel events: %+v", evs)
	}
}
