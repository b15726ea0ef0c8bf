package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth/totp"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/store"
)

type fakeTOTP struct {
	mu      sync.Mutex
	enrol   map[string]gate.TOTP
	targets map[string]gate.Target
	modes   map[string]string // "env:NAME" or "target:NAME"
	infos   []gate.TargetInfo
	users   map[string]gate.UserInfo
	infoErr error
	grace   map[[3]string]time.Time
	downErr error // every grace read fails (the store is down)
}

func (f *fakeTOTP) PutTOTPGrace(_ context.Context, user, cred, addr string, until time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.grace == nil {
		f.grace = map[[3]string]time.Time{}
	}
	f.grace[[3]string{user, cred, addr}] = until
	return nil
}

func (f *fakeTOTP) TOTPGraceUntil(_ context.Context, user, cred, addr string) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.downErr != nil {
		return time.Time{}, f.downErr
	}
	return f.grace[[3]string{user, cred, addr}], nil
}

func (f *fakeTOTP) ListTargetInfo(context.Context) ([]gate.TargetInfo, error) {
	return f.infos, f.infoErr
}

func (f *fakeTOTP) GetUserInfo(_ context.Context, user string) (gate.UserInfo, error) {
	if f.infoErr != nil {
		return gate.UserInfo{}, f.infoErr
	}
	u, ok := f.users[user]
	if !ok {
		return gate.UserInfo{}, store.ErrNotFound
	}
	return u, nil
}

func (f *fakeTOTP) GetTOTP(_ context.Context, user string) (gate.TOTP, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.enrol[user]
	if !ok {
		return gate.TOTP{}, store.ErrNotFound
	}
	return t, nil
}

func (f *fakeTOTP) UseTOTPStep(_ context.Context, user string, step int64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.enrol[user]
	if t.LastStep >= step {
		return false, nil
	}
	t.LastStep = step
	f.enrol[user] = t
	return true, nil
}

func (f *fakeTOTP) PutTOTP(_ context.Context, t gate.TOTP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enrol[t.User] = t
	return nil
}

func (f *fakeTOTP) GetTarget(_ context.Context, name string) (gate.Target, error) {
	t, ok := f.targets[name]
	if !ok {
		return gate.Target{}, store.ErrNotFound
	}
	return t, nil
}

func (f *fakeTOTP) GetTOTPMode(_ context.Context, env, target string) (string, error) {
	if target != "" {
		return f.modes["target:"+target], nil
	}
	return f.modes["env:"+env], nil
}

type fakeThrottle struct {
	codeFails map[string]int
	down      error
}

func (f *fakeThrottle) PasswordLocked(string) (bool, error) { return false, nil }
func (f *fakeThrottle) PasswordFailed(string)               {}
func (f *fakeThrottle) CodeLocked(user string) (bool, error) {
	return f.codeFails[user] >= 3 || f.down != nil, f.down
}
func (f *fakeThrottle) CodeFailed(user string) { f.codeFails[user]++ }

type addrMeta struct {
	meta
	addr string
}

func (m addrMeta) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.ParseIP(m.addr), Port: 40000} }

const testSecret = "JBSWY3DPEHPK3PXP"

func secondFactorSetup(t *testing.T, cfg TOTPConfig) (*SecondFactor, *fakeTOTP, *fakeThrottle, *time.Time) {
	t.Helper()
	key := make([]byte, 32)
	sealed, err := totp.Seal(key, "alice", testSecret)
	if err != nil {
		t.Fatal(err)
	}
	st := &fakeTOTP{enrol: map[string]gate.TOTP{"alice": {User: "alice", Secret: sealed, Active: true}},
		targets: map[string]gate.Target{"web": {Name: "web", Env: "prod"}, "db": {Name: "db", Env: "prod"}},
		modes:   map[string]string{"target:db": gate.TOTPNever},
		infos:   []gate.TargetInfo{{Target: "web", ID: 1, Aliases: []string{"www"}}, {Target: "db", ID: 2, Aliases: []string{"data"}}},
		users:   map[string]gate.UserInfo{"alice": {User: "alice", UID: 1003}}}
	th := &fakeThrottle{codeFails: map[string]int{}}
	cfg.Key = key
	f := NewSecondFactor(st, cfg, th, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Unix(1_800_000_000, 0)
	f.now = func() time.Time { return now }
	return f, st, th, &now
}

func firstFactor(fp string) *ssh.Permissions {
	return &ssh.Permissions{Extensions: (&gate.Identity{User: "alice", Method: "publickey", Fingerprint: fp}).Extensions()}
}

// answer runs the keyboard-interactive step of a partial success with code.
func answer(t *testing.T, conn ssh.ConnMetadata, err error, code string) (*ssh.Permissions, error) {
	t.Helper()
	var ps *ssh.PartialSuccessError
	if !errors.As(err, &ps) || ps.Next.KeyboardInteractiveCallback == nil || ps.Next.PasswordCallback != nil || ps.Next.PublicKeyCallback != nil {
		t.Fatalf("want a partial success offering keyboard-interactive only, got %v", err)
	}
	return ps.Next.KeyboardInteractiveCallback(conn, func(name, instr string, qs []string, echos []bool) ([]string, error) {
		if len(qs) != 1 || qs[0] != CodePrompt || echos[0] {
			t.Fatalf("questions %q echo %v", qs, echos)
		}
		return []string{code}, nil
	})
}

func TestSecondFactorFlow(t *testing.T) {
	f, st, th, now := secondFactorSetup(t, TOTPConfig{Required: "enrolled", Grace: 10 * time.Minute})
	conn := addrMeta{meta{"alice+web"}, "192.0.2.1"}
	code := func(at time.Time) string { c, _ := totp.Code(testSecret, at); return c }

	// Wrong code: denied, counted.
	_, err := f.after(conn, firstFactor("SHA256:k1"))
	if p, err := answer(t, conn, err, "000000"); p != nil || err == nil {
		t.Fatalf("wrong code: %v %v", p, err)
	}
	if th.codeFails["alice"] != 1 {
		t.Fatalf("wrong code not counted: %v", th.codeFails)
	}
	// The previous step's code: accepted, identity carries the second factor.
	_, err = f.after(conn, firstFactor("SHA256:k1"))
	p, err := answer(t, conn, err, code(now.Add(-totp.Period)))
	if err != nil {
		t.Fatalf("right code: %v", err)
	}
	id, _ := gate.IdentityFromExtensions(p.Extensions)
	if id.User != "alice" || id.Method != "publickey+totp" || id.Fingerprint != "SHA256:k1" {
		t.Fatalf("identity %+v", id)
	}
	// Within grace, same user, key and address: no code.
	if p, err := f.after(conn, firstFactor("SHA256:k1")); err != nil || p == nil {
		t.Fatalf("within grace: %v %v", p, err)
	}
	// Another key, another address: a code; the used one is refused, even
	// two steps on (it belongs to an older step than the last one used).
	other := addrMeta{meta{"alice+web"}, "192.0.2.2"}
	for _, c := range []struct {
		conn ssh.ConnMetadata
		fp   string
	}{{conn, "SHA256:k2"}, {other, "SHA256:k1"}} {
		_, err := f.after(c.conn, firstFactor(c.fp))
		p, err := answer(t, c.conn, err, code(now.Add(-totp.Period)))
		if p != nil || err == nil {
			t.Fatalf("replayed code accepted for %v", c)
		}
		if be := (*ssh.BannerError)(nil); !errors.As(err, &be) || be.Message != "sshgate: that code was already used; wait for the next one\r\n" {
			t.Errorf("replayed code: %v, want the already-used banner", err)
		}
	}
	if th.codeFails["alice"] != 3 {
		t.Fatalf("replays not counted as wrong codes: %v", th.codeFails)
	}
	th.codeFails["alice"] = 0
	// The current step is still fresh.
	_, err = f.after(other, firstFactor("SHA256:k1"))
	if _, err := answer(t, other, err, code(*now)); err != nil {
		t.Fatalf("current code: %v", err)
	}
	// Grace ends.
	*now = now.Add(11 * time.Minute)
	if _, err := f.after(conn, firstFactor("SHA256:k1")); err == nil {
		t.Fatal("grace did not end")
	}
	// Target mode never: no code; env mode always: a code even within grace.
	if p, err := f.after(addrMeta{meta{"alice+db"}, "192.0.2.9"}, firstFactor("SHA256:k9")); err != nil || p == nil {
		t.Fatalf("target never: %v", err)
	}
	st.modes["env:prod"] = gate.TOTPAlways
	if _, err := f.after(other, firstFactor("SHA256:k1")); err == nil {
		t.Fatal("env always within grace: no code asked")
	}
	// Locked after wrong codes: refused with a banner, not asked.
	th.codeFails["alice"] = 3
	_, err = f.after(conn, firstFactor("SHA256:k1"))
	var be *ssh.BannerError
	if !errors.As(err, &be) || !errors.Is(err, ErrDenied) {
		t.Fatalf("locked: %v", err)
	}
}

func TestSecondFactorPolicy(t *testing.T) {
	for _, c := range []struct {
		name     string
		required string
		enrolled bool
		want     string // "perms", "partial", "denied"
	}{
		{"never", "never", true, "perms"},
		{"enrolled, not enrolled", "enrolled", false, "perms"},
		{"enrolled, enrolled", "enrolled", true, "partial"},
		{"always, not enrolled", "always", false, "denied"},
		{"always, enrolled", "always", true, "partial"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, st, _, _ := secondFactorSetup(t, TOTPConfig{Required: c.required})
			if !c.enrolled {
				delete(st.enrol, "alice")
			}
			p, err := f.after(meta{"alice"}, firstFactor("SHA256:k1"))
			var ps *ssh.PartialSuccessError
			got := "denied"
			switch {
			case err == nil && p != nil:
				got = "perms"
			case errors.As(err, &ps):
				got = "partial"
			}
			if got != c.want {
				t.Fatalf("got %s (%v), want %s", got, err, c.want)
			}
		})
	}
}

// The mode is the one of the target the broker will route to, however the
// username names it: canonical name, alias, NODEID-UID or the user's
// default target; and the permissions record how the login was proven.
func TestSecondFactorModeByRoute(t *testing.T) {
	for _, c := range []struct {
		name      string
		username  string
		def       string // alice's default target
		infoErr   error
		mode      string // web's mode; db is never
		wantMode  string
		wantTgt   string
		wantProof string // "" for a partial success (a code is asked)
	}{
		{"name always", "alice+web", "", nil, gate.TOTPAlways, gate.TOTPAlways, "web", ""},
		{"alias always", "alice+www", "", nil, gate.TOTPAlways, gate.TOTPAlways, "web", ""},
		{"node id always", "1-1003", "", nil, gate.TOTPAlways, gate.TOTPAlways, "web", ""},
		{"default target always", "alice", "web", nil, gate.TOTPAlways, gate.TOTPAlways, "web", ""},
		{"alias never", "alice+data", "", nil, "", gate.TOTPNever, "db", policy.TOTPProofNone},
		{"node id never", "2-1003", "", nil, "", gate.TOTPNever, "db", policy.TOTPProofNone},
		{"default target never", "alice", "db", nil, "", gate.TOTPNever, "db", policy.TOTPProofNone},
		{"gate beats default target", "alice+gate", "db", nil, "", gate.TOTPGrace, "", ""},
		{"no default target", "alice", "", nil, "", gate.TOTPGrace, "", ""},
		{"unknown alias", "alice+nosuch", "", nil, "", gate.TOTPGrace, "", ""},
		{"store error fails closed", "alice+data", "", errors.New("disk on fire"), "", gate.TOTPAlways, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, st, _, _ := secondFactorSetup(t, TOTPConfig{Required: "enrolled", Grace: 10 * time.Minute})
			st.users["alice"] = gate.UserInfo{User: "alice", UID: 1003, DefaultTarget: c.def}
			st.infoErr = c.infoErr
			if c.mode != "" {
				st.modes["target:web"] = c.mode
			}
			mode, tgt := f.mode(context.Background(), c.username, "alice")
			if mode != c.wantMode || tgt != c.wantTgt {
				t.Fatalf("mode(%q) = %q, %q; want %q, %q", c.username, mode, tgt, c.wantMode, c.wantTgt)
			}
			p, err := f.after(meta{c.username}, firstFactor("SHA256:k1"))
			if c.wantProof == "" {
				var ps *ssh.PartialSuccessError
				if !errors.As(err, &ps) {
					t.Fatalf("want a code asked, got %v %v", p, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if proof, mode, tgt, ok := totpProof(p); !ok || proof != c.wantProof || mode != c.wantMode || tgt != c.wantTgt {
				t.Fatalf("proof %q %q %q %v", proof, mode, tgt, ok)
			}
		})
	}
}

// Every way through the second factor records its proof, and a first
// factor cannot bring its own.
func TestSecondFactorProof(t *testing.T) {
	code := func(at time.Time) string { c, _ := totp.Code(testSecret, at); return c }
	proof := func(t *testing.T, p *ssh.Permissions) string {
		t.Helper()
		pr, _, _, ok := totpProof(p)
		if !ok {
			t.Fatalf("no proof recorded in %v", p.Extensions)
		}
		return pr
	}
	f, st, _, now := secondFactorSetup(t, TOTPConfig{Required: "enrolled", Grace: 10 * time.Minute})
	conn := addrMeta{meta{"alice+web"}, "192.0.2.1"}
	forged := firstFactor("SHA256:k1")
	forged.Extensions[ExtTOTPProof] = policy.TOTPProofCode
	_, err := f.after(conn, forged)
	p, err := answer(t, conn, err, code(*now))
	if err != nil || proof(t, p) != policy.TOTPProofCode || p.Extensions[ExtTOTPTarget] != "web" {
		t.Fatalf("code: %v %v", err, p)
	}
	p, err = f.after(conn, forged)
	if err != nil || proof(t, p) != policy.TOTPProofGrace {
		t.Fatalf("grace: %v %v", err, p)
	}
	p, err = f.after(addrMeta{meta{"alice+db"}, "192.0.2.1"}, forged)
	if err != nil || proof(t, p) != policy.TOTPProofNone {
		t.Fatalf("never: %v %v", err, p)
	}
	delete(st.enrol, "alice")
	p, err = f.after(conn, forged)
	if err != nil || proof(t, p) != policy.TOTPProofExempt {
		t.Fatalf("not enrolled: %v %v", err, p)
	}
	if _, _, _, ok := totpProof(firstFactor("SHA256:k1")); ok {
		t.Fatal("a proof read where none was recorded")
	}
	hook := &ssh.Permissions{Extensions: map[string]string{ExtWebhook: "1"}}
	if pr, _, _, ok := totpProof(hook); !ok || pr != policy.TOTPProofExempt {
		t.Fatalf("webhook login: %q %v", pr, ok)
	}
}

// A store that does not answer during the second factor fails closed with
// an error wrapping store.ErrUnavailable (never a grace login, never a
// plain "wrong code").
func TestSecondFactorStoreDown(t *testing.T) {
	f, st, th, _ := secondFactorSetup(t, TOTPConfig{Required: "enrolled", Grace: 10 * time.Minute})
	conn := addrMeta{meta{"alice+web"}, "192.0.2.1"}
	st.downErr = errors.New("connection refused")
	if p, err := f.after(conn, firstFactor("SHA256:k1")); p != nil || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("grace read failing: %v, %v; want ErrUnavailable", p, err)
	} else if be := (*ssh.BannerError)(nil); !errors.As(err, &be) || !strings.HasPrefix(be.Message, "sshgate: service temporarily unavailable, try again (ref ") {
		t.Fatalf("grace read failing: %#v, want the one try-again banner", err)
	}
	st.downErr = nil
	th.down = errors.New("connection refused")
	if p, err := f.after(conn, firstFactor("SHA256:k1")); p != nil || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("lock read failing: %v, %v; want ErrUnavailable", p, err)
	}
}
