package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth/totp"
	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/gate"
)

func newCASigner(t *testing.T) ssh.Signer {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func certSetup(t *testing.T) (*Authenticator, *ca.CA) {
	a, _, _ := setup(t)
	own := &ca.CA{Client: newCASigner(t)}
	a.certs = ca.NewTrust(t.TempDir(), own, nil)
	return a, own
}

func userCert(t *testing.T, c *ca.CA, principal string, opts map[string]string) *ssh.Certificate {
	t.Helper()
	cert, err := c.SignClient(ca.UserCert{Key: newKey(t), Principals: []string{principal}, KeyID: "id-" + principal, TTL: time.Hour, CriticalOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestCertificateLogin(t *testing.T) {
	a, own := certSetup(t)
	tests := []struct {
		name, user string
		cert       *ssh.Certificate
		ok         bool
	}{
		{"principal is the gate user", "alice+web-1", userCert(t, own, "alice", nil), true},
		{"principal of another user", "alice", userCert(t, own, "bob", nil), false},
		{"principal of an unknown user", "carol", userCert(t, own, "carol", nil), false},
		{"source-address elsewhere", "alice", userCert(t, own, "alice", map[string]string{"source-address": "10.0.0.0/8"}), false},
		{"untrusted CA", "alice", userCert(t, &ca.CA{Client: newCASigner(t)}, "alice", nil), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			perms, err := a.PublicKey(meta{tt.user}, tt.cert)
			if err == nil {
				perms, err = a.VerifiedPublicKey(meta{tt.user}, tt.cert, perms, tt.cert.Type())
			}
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			id, err := gate.IdentityFromExtensions(perms.Extensions)
			if err != nil || id.User != "alice" || id.Method != MethodCert {
				t.Fatalf("identity %+v %v", id, err)
			}
			if perms.Extensions[ExtCertKeyID] != "id-alice" || perms.Extensions[ExtCertSerial] == "" {
				t.Fatalf("certificate details missing: %v", perms.Extensions)
			}
		})
	}
}

// The permissions a query for one certificate earned never verify another
// certificate or the plain key behind it (CVE-2024-45337).
func TestCertificateQueryDoesNotVerifyAnother(t *testing.T) {
	a, own := certSetup(t)
	mine := userCert(t, own, "alice", nil)
	other := userCert(t, own, "alice", nil)
	perms, err := a.PublicKey(meta{"alice"}, mine)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []ssh.PublicKey{other, mine.Key} {
		if _, err := a.VerifiedPublicKey(meta{"alice"}, k, perms, k.Type()); err == nil {
			t.Fatalf("permissions for one certificate verified %s", k.Type())
		}
	}
}

func TestCertificatesRefusedWithoutTrust(t *testing.T) {
	a, _, _ := setup(t)
	cert := userCert(t, &ca.CA{Client: newCASigner(t)}, "alice", nil)
	if _, err := a.PublicKey(meta{"alice"}, cert); err == nil {
		t.Fatal("a certificate was accepted with no CA trusted")
	}
}

func TestForceCommandCarried(t *testing.T) {
	a, own := certSetup(t)
	cert := userCert(t, own, "alice", map[string]string{"force-command": "uptime"})
	perms, err := a.PublicKey(meta{"alice"}, cert)
	if err != nil {
		t.Fatal(err)
	}
	perms, err = a.VerifiedPublicKey(meta{"alice"}, cert, perms, cert.Type())
	if err != nil || perms.CriticalOptions["force-command"] != "uptime" {
		t.Fatalf("force-command not carried: %v %v", perms, err)
	}
}

func TestLogSafe(t *testing.T) {
	for in, want := range map[string]string{"alice laptop": "alice laptop", "a\nb\x1b[31m": "a?b?[31m", strings.Repeat("x", 500): strings.Repeat("x", 128)} {
		if got := logSafe(in, 128); got != want {
			t.Errorf("logSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// A certificate is a first factor like a key: a user enrolled in TOTP is asked
// for a code, and the login after the code keeps every restriction of the
// certificate (force-command, no PTY, no forwarding).
func TestCertificateThenSecondFactorKeepsRestrictions(t *testing.T) {
	a, own := certSetup(t)
	f, _, _, now := secondFactorSetup(t, TOTPConfig{Required: "enrolled"})
	a.second = f
	cert, err := own.SignClient(ca.UserCert{Key: newKey(t), Principals: []string{"alice"}, KeyID: "id-alice", TTL: time.Hour,
		CriticalOptions: map[string]string{"force-command": "uptime"}})
	if err != nil {
		t.Fatal(err)
	}
	conn := meta{"alice"}
	perms, err := a.PublicKey(conn, cert)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.VerifiedPublicKey(conn, cert, perms, cert.Type())
	code, _ := totp.Code(testSecret, *now)
	p, err := answer(t, conn, err, code)
	if err != nil {
		t.Fatalf("right code: %v", err)
	}
	if cmd, ok := forceCommand(p); !ok || cmd != "uptime" {
		t.Errorf("force-command after the second factor: %q %v", cmd, ok)
	}
	if pty, fwd := certAllows(p); pty || fwd {
		t.Errorf("certificate without permit-pty/permit-port-forwarding allows pty=%v forwarding=%v after the second factor", pty, fwd)
	}
	if p.Extensions[ExtCertSerial] == "" {
		t.Errorf("certificate serial lost: %v", p.Extensions)
	}
}
