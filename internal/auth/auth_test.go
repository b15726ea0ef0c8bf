package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth/passwd"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/store"
)

type fakeUsers struct {
	users map[string]gate.User
	keys  map[string][]gate.Key
}

func (f *fakeUsers) GetUser(_ context.Context, name string) (gate.User, error) {
	u, ok := f.users[name]
	if !ok {
		return gate.User{}, store.ErrNotFound
	}
	return u, nil
}

func (f *fakeUsers) ListKeys(_ context.Context, user string) ([]gate.Key, error) {
	return f.keys[user], nil
}

func (f *fakeUsers) UserByUID(_ context.Context, uid int64) (gate.UserInfo, error) {
	for name, u := range map[int64]string{1000: "alice", 1001: "bob", 1002: "gone"} {
		if name == uid {
			return gate.UserInfo{User: u, UID: uid}, nil
		}
	}
	return gate.UserInfo{}, store.ErrNotFound
}

type meta struct{ user string }

func (m meta) User() string          { return m.user }
func (m meta) SessionID() []byte     { return nil }
func (m meta) ClientVersion() []byte { return nil }
func (m meta) ServerVersion() []byte { return nil }
func (m meta) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (m meta) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }

func newKey(t *testing.T) ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	return k
}

func setup(t *testing.T) (*Authenticator, ssh.PublicKey, ssh.PublicKey) {
	alice, bob := newKey(t), newKey(t)
	hash, err := passwd.Hash([]byte("alice-pw"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeUsers{
		users: map[string]gate.User{"alice": {Name: "alice", PasswordHash: hash}, "bob": {Name: "bob"}},
		keys: map[string][]gate.Key{
			"alice": {{User: "alice", AuthorizedKey: sshkeys.AuthorizedLine(alice)}},
			"bob":   {{User: "bob", AuthorizedKey: sshkeys.AuthorizedLine(bob)}},
		},
	}
	return New(Deps{Users: f, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}), alice, bob
}

func TestPublicKey(t *testing.T) {
	a, alice, bob := setup(t)
	tests := []struct {
		user string
		key  ssh.PublicKey
		ok   bool
	}{
		{"alice", alice, true},
		{"alice+web-1", alice, true},
		{"alice+bad;target", alice, true}, // the target is judged after auth, identically to unknown ones
		{"alice", bob, false},
		{"bob", alice, false},
		{"carol", alice, false},
		{"ALICE", alice, false},
		{"", alice, false},
		{"7-1000", alice, true},  // NODEID-UID: alice's uid
		{"7-1001", alice, false}, // bob's uid with alice's key
		{"7-1002", alice, false}, // a uid whose user is gone
		{"7-999", alice, false},  // nobody's uid
		{"7-01000", alice, false},
		{"07-1000", alice, false},
		{"7-1000+web", alice, false},
	}
	for _, tt := range tests {
		perms, err := a.PublicKey(meta{tt.user}, tt.key)
		if (err == nil) != tt.ok {
			t.Errorf("PublicKey(%q) err = %v, want ok=%v", tt.user, err, tt.ok)
			continue
		}
		if !tt.ok {
			continue
		}
		// Only the verified callback makes it an identity.
		perms, err = a.VerifiedPublicKey(meta{tt.user}, tt.key, perms, tt.key.Type())
		if err != nil {
			t.Fatalf("VerifiedPublicKey(%q): %v", tt.user, err)
		}
		id, err := gate.IdentityFromExtensions(perms.Extensions)
		if err != nil || id.User != "alice" || id.Method != "publickey" || id.Fingerprint != sshkeys.Fingerprint(alice) {
			t.Errorf("identity = %+v, %v", id, err)
		}
	}
}

// Permissions from a query for one key never verify another.
func TestVerifiedRejectsOtherKey(t *testing.T) {
	a, alice, bob := setup(t)
	perms, err := a.PublicKey(meta{"alice"}, alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.VerifiedPublicKey(meta{"alice"}, bob, perms, bob.Type()); err == nil {
		t.Fatal("alice's query permissions verified bob's key")
	}
	if _, err := a.VerifiedPublicKey(meta{"alice"}, alice, nil, alice.Type()); err == nil {
		t.Fatal("verified with no permissions")
	}
}

func TestCertificatesRefused(t *testing.T) {
	a, alice, _ := setup(t)
	cert := &ssh.Certificate{Key: alice, CertType: ssh.UserCert, ValidPrincipals: []string{"alice"}}
	if _, err := a.PublicKey(meta{"alice"}, cert); err == nil {
		t.Fatal("a certificate was accepted as a plain key")
	}
}

func TestPassword(t *testing.T) {
	a, _, _ := setup(t)
	tests := []struct {
		user, pw string
		ok       bool
	}{
		{"alice", "alice-pw", true},
		{"alice+web-1", "alice-pw", true},
		{"alice", "wrong", false},
		{"bob", "", false}, // no password set
		{"bob", "alice-pw", false},
		{"carol", "alice-pw", false},
		{"Alice", "alice-pw", false},
		{"3-1000", "alice-pw", true}, // NODEID-UID with alice's uid
		{"3-1001", "alice-pw", false},
		{"3-999", "alice-pw", false},
		{"03-1000", "alice-pw", false},
	}
	for _, tt := range tests {
		perms, err := a.Password(meta{tt.user}, []byte(tt.pw))
		if (err == nil) != tt.ok {
			t.Errorf("Password(%q, %q) err = %v, want ok=%v", tt.user, tt.pw, err, tt.ok)
			continue
		}
		if tt.ok && perms.Extensions[gate.ExtUser] != "alice" {
			t.Errorf("Password(%q) identity %v", tt.user, perms.Extensions)
		}
	}
}

// Unknown users cost as much as known ones: no timing oracle.
func TestPasswordUnknownUserTakesAsLong(t *testing.T) {
	a, _, _ := setup(t)
	timeIt := func(user string) time.Duration {
		best := time.Hour
		for i := 0; i < 3; i++ {
			start := time.Now()
			a.Password(meta{user}, []byte("wrong"))
			best = min(best, time.Since(start))
		}
		return best
	}
	known, unknown := timeIt("alice"), timeIt("nobody-here")
	if unknown < known/3 {
		t.Fatalf("unknown user answered in %s, known in %s: timing reveals which users exist", unknown, known)
	}
}

// Passwords over keyboard-interactive (PuTTY, sshpass): one prompt, echo
// off, checked exactly as the password method checks them, through the
// password callback installed at the time (so its wrappers see them too).
func TestPasswordOverKeyboardInteractive(t *testing.T) {
	a, _, _ := setup(t)
	var cfg ssh.ServerConfig
	a.Install(&cfg)
	var seen []string
	inner := cfg.PasswordCallback
	cfg.PasswordCallback = func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		seen = append(seen, string(pw))
		return inner(m, pw)
	}
	answer := func(ans ...string) ssh.KeyboardInteractiveChallenge {
		return func(name, instruction string, questions []string, echos []bool) ([]string, error) {
			if len(questions) != 1 || questions[0] != "Password: " || len(echos) != 1 || echos[0] {
				t.Fatalf("prompt %q echo %v, want one %q without echo", questions, echos, "Password: ")
			}
			return ans, nil
		}
	}
	tests := []struct {
		user    string
		answers []string
		ok      bool
	}{
		{"alice", []string{"alice-pw"}, true},
		{"alice+web-1", []string{"alice-pw"}, true},
		{"alice", []string{"wrong"}, false},
		{"alice", []string{"alice-pw", "alice-pw"}, false}, // two answers to one prompt
		{"alice", nil, false},
		{"bob", []string{""}, false},
		{"carol", []string{"alice-pw"}, false},
	}
	for _, tt := range tests {
		perms, err := cfg.KeyboardInteractiveCallback(meta{tt.user}, answer(tt.answers...))
		if (err == nil) != tt.ok {
			t.Errorf("keyboard-interactive %q %q: err = %v, want ok=%v", tt.user, tt.answers, err, tt.ok)
			continue
		}
		if tt.ok && perms.Extensions[gate.ExtUser] != "alice" {
			t.Errorf("keyboard-interactive %q identity %v", tt.user, perms.Extensions)
		}
	}
	if len(seen) != 5 || seen[0] != "alice-pw" || seen[2] != "wrong" {
		t.Errorf("password callback saw %q, want the five single answers", seen)
	}
	// A client that gives up at the prompt is refused without a check.
	seen = nil
	_, err := cfg.KeyboardInteractiveCallback(meta{"alice"}, func(string, string, []string, []bool) ([]string, error) {
		return nil, errors.New("client gone")
	})
	if err == nil || len(seen) != 0 {
		t.Errorf("abandoned prompt: err %v, checks %q", err, seen)
	}
}
