package auth

import (
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth/totp"
	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
)

type idMeta struct {
	meta
	id string
}

func (m idMeta) ConnID() string { return m.id }

func installed(a *Authenticator) *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{}
	a.Install(cfg)
	return cfg
}

// A completed login carries the typed session: the proven user, the username
// parsed once (NODEID-UID resolved to the uid's owner), the connection id the
// accept loop minted, and nothing the strings would have to re-parse.
func TestInstalledCallbacksAttachTheSession(t *testing.T) {
	a, _, _ := setup(t)
	cfg := installed(a)
	for _, tt := range []struct {
		username string
		want     gate.Route
		bad      bool
	}{
		{"alice+web-1+root", gate.Route{User: "alice", Target: "web-1", Login: "root", Raw: "web-1+root"}, false},
		{"alice", gate.Route{User: "alice"}, false},
		{"1-1000", gate.Route{User: "alice", Raw: "1-1000", Node: 1, UID: 1000}, false},
		{"alice+Bad!", gate.Route{User: "alice", Raw: "Bad!"}, true},
	} {
		perms, err := cfg.PasswordCallback(idMeta{meta{tt.username}, "c0ffee"}, []byte("alice-pw"))
		if err != nil {
			t.Fatalf("%s: %v", tt.username, err)
		}
		s := gate.SessionOf(perms.ExtraData)
		if s == nil {
			t.Fatalf("%s: no session in %+v", tt.username, perms)
		}
		if s.ConnID != "c0ffee" || s.Identity.User != "alice" || s.Identity.Method != "password" || s.Username != tt.username {
			t.Errorf("%s: session %+v", tt.username, s)
		}
		if s.Route != tt.want || s.BadTarget != tt.bad {
			t.Errorf("%s: route %+v bad %v, want %+v %v", tt.username, s.Route, s.BadTarget, tt.want, tt.bad)
		}
		if s.Cert != nil || s.Webhook != nil || s.TOTP.Recorded {
			t.Errorf("%s: a password login has cert/webhook/totp: %+v", tt.username, s)
		}
	}
	if perms, err := cfg.PasswordCallback(idMeta{meta{"alice"}, "x"}, []byte("wrong")); err == nil || perms != nil {
		t.Fatal("a wrong password got permissions")
	}
}

// The session of a certificate login completed by a TOTP code is built by
// the code step, and keeps the certificate's restrictions and the proof.
func TestSessionAfterSecondFactor(t *testing.T) {
	a, own := certSetup(t)
	f, _, _, now := secondFactorSetup(t, TOTPConfig{Required: "enrolled"})
	a.second = f
	cfg := installed(a)
	cert, err := own.SignClient(ca.UserCert{Key: newKey(t), Principals: []string{"alice"}, KeyID: "id", TTL: time.Hour,
		CriticalOptions: map[string]string{"force-command": "uptime"}})
	if err != nil {
		t.Fatal(err)
	}
	m := idMeta{meta{"alice+web"}, "abc"}
	perms, err := cfg.PublicKeyCallback(m, cert)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.VerifiedPublicKeyCallback(m, cert, perms, "")
	code, _ := totp.Code(testSecret, *now)
	final, err := answer(t, m, err, code)
	if err != nil {
		t.Fatal(err)
	}
	s := gate.SessionOf(final.ExtraData)
	if s == nil || s.ConnID != "abc" || s.Identity.Method != "cert+totp" {
		t.Fatalf("session %+v", s)
	}
	if s.Cert == nil || s.Cert.PTY || s.Cert.Forwarding || s.Cert.Agent || !s.Cert.HasForce || s.Cert.ForceCommand != "uptime" {
		t.Errorf("certificate restrictions lost: %+v", s.Cert)
	}
	if !s.TOTP.Recorded || s.TOTP.Proof != policy.TOTPProofCode || s.TOTP.Target != "web" {
		t.Errorf("totp proof %+v", s.TOTP)
	}
}
