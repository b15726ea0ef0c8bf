package ca

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/sshkeys"
)

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newCA(t *testing.T) *CA {
	t.Helper()
	return &CA{User: newSigner(t), Client: newSigner(t), Host: newSigner(t)}
}

func TestInitLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := Load(dir); !errors.Is(err, ErrNoCA) {
		t.Fatalf("Load before Init: %v, want ErrNoCA", err)
	}
	created, err := Init(dir)
	if err != nil || len(created) != 3 {
		t.Fatalf("Init: %v %v", created, err)
	}
	for _, name := range []string{UserKeyFile, ClientKeyFile, HostKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", name, fi, err)
		}
	}
	c, err := Load(dir)
	if err != nil || c.User == nil || c.Client == nil || c.Host == nil || c.User.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("Load: %+v %v", c, err)
	}
	again, err := Init(dir)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Init created %v (%v), want the keys kept", again, err)
	}
	c2, _ := Load(dir)
	if string(c2.User.PublicKey().Marshal()) != string(c.User.PublicKey().Marshal()) {
		t.Fatal("second Init replaced the user CA")
	}
	if err := os.Chmod(filepath.Join(dir, UserKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("Load with a world-readable key: %v, want a refusal naming 0600", err)
	}
}

func TestNewFromCryptoSigner(t *testing.T) {
	_, uk, _ := ed25519.GenerateKey(rand.Reader)
	c, err := New(uk, nil, nil) // e.g. a KMS-backed crypto.Signer
	if err != nil || c.User == nil || c.Host != nil {
		t.Fatalf("New: %+v %v", c, err)
	}
	if _, err := c.SignHost(newSigner(t).PublicKey(), []string{"h"}, "", time.Hour); !errors.Is(err, ErrNoCA) {
		t.Fatalf("SignHost without host CA: %v", err)
	}
}

var addr1 = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}
var addr2 = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 4000}

func TestCheckUserCert(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	own := newCA(t)
	own.Now = func() time.Time { return now }
	other := newCA(t)
	other.Now = own.Now
	dir := t.TempDir()
	trust := NewTrust(dir, own, nil)
	trust.Now = own.Now
	userKey := newSigner(t).PublicKey()

	sign := func(c *CA, mod func(*UserCert)) *ssh.Certificate {
		r := UserCert{Key: userKey, Principals: []string{"alice"}, KeyID: "k", TTL: time.Hour}
		if mod != nil {
			mod(&r)
		}
		cert, err := c.SignClient(r)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	inward, err := own.SignInward("alice", "k", time.Hour, false, false)
	if err != nil {
		t.Fatal(err)
	}
	revokedSerial := sign(own, nil)
	if _, err := AppendRevocation(dir, "serial "+strconv.FormatUint(revokedSerial.Serial, 10), "test"); err != nil {
		t.Fatal(err)
	}
	revokedKeyOwner := newSigner(t).PublicKey()
	if _, err := AppendRevocation(dir, "key "+sshkeys.Fingerprint(revokedKeyOwner), ""); err != nil {
		t.Fatal(err)
	}
	hostCert, err := own.SignHost(userKey, []string{"alice"}, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hostCert.SignatureKey = own.Client.PublicKey() // a host cert presented as a user cert, even from the client CA
	noPrincipals := sign(own, nil)
	noPrincipals.ValidPrincipals = nil
	if err := noPrincipals.SignCert(rand.Reader, own.Client); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		cert *ssh.Certificate
		user string
		addr net.Addr
		at   time.Time
		want string // "" accepted, else part of the reason
	}{
		{"good", sign(own, nil), "alice", addr1, now, ""},
		{"principal wildcard literal", sign(own, func(r *UserCert) { r.Principals = []string{"*"} }), "alice", addr1, now, "principal"},
		{"wrong principal", sign(own, nil), "bob", addr1, now, "principal"},
		{"empty principals", noPrincipals, "alice", addr1, now, "no principals"},
		{"expired", sign(own, nil), "alice", addr1, now.Add(2 * time.Hour), "expired"},
		{"not yet valid", sign(own, nil), "alice", addr1, now.Add(-time.Hour), "not yet valid"},
		{"source-address allows", sign(own, func(r *UserCert) { r.CriticalOptions = map[string]string{OptSourceAddress: "127.0.0.1/32"} }), "alice", addr1, now, ""},
		{"source-address refuses", sign(own, func(r *UserCert) { r.CriticalOptions = map[string]string{OptSourceAddress: "127.0.0.1/32"} }), "alice", addr2, now, "source-address"},
		{"force-command accepted", sign(own, func(r *UserCert) { r.CriticalOptions = map[string]string{OptForceCommand: "true"} }), "alice", addr1, now, ""},
		{"unknown critical option", sign(own, func(r *UserCert) { r.CriticalOptions = map[string]string{"verify-required": ""} }), "alice", addr1, now, "critical option"},
		{"revoked serial", revokedSerial, "alice", addr1, now, "revoked"},
		{"revoked key", sign(own, func(r *UserCert) { r.Key = revokedKeyOwner }), "alice", addr1, now, "revoked"},
		{"untrusted CA", sign(other, nil), "alice", addr1, now, "untrusted CA"},
		{"login cert of the user CA (for targets)", inward.Cert, "alice", addr1, now, "untrusted CA"},
		{"host cert as user cert", hostCert, "alice", addr1, now, "not a user certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at := c.at
			trust.Now = func() time.Time { return at }
			err := trust.CheckUserCert(c.cert, c.user, c.addr)
			if c.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("got %v, want a refusal mentioning %q", err, c.want)
			}
		})
	}

	// A trusted file adds another CA; a damaged one fails closed.
	trust.Now = own.Now
	if _, err := AppendTrusted(dir, other.Client.PublicKey(), "other"); err != nil {
		t.Fatal(err)
	}
	if err := trust.CheckUserCert(sign(other, nil), "alice", addr1); err != nil {
		t.Fatalf("cert from a trusted CA refused: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, TrustedFile), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := trust.CheckUserCert(sign(own, nil), "alice", addr1); err == nil {
		t.Fatal("accepted with an unreadable trusted CA file")
	}
}

func TestSignInward(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	c := newCA(t)
	c.Now = func() time.Time { return now }
	for i, fwd := range []bool{false, true} {
		agent := i == 0 // each alone
		in, err := c.SignInward("deploy", "sshgate user=alice conn=1", 2*time.Minute, fwd, agent)
		if err != nil {
			t.Fatal(err)
		}
		cert := in.Cert
		if cert.CertType != ssh.UserCert || len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != "deploy" || cert.KeyId != "sshgate user=alice conn=1" {
			t.Fatalf("cert: %+v", cert)
		}
		if got, want := int64(cert.ValidBefore)-int64(cert.ValidAfter), int64((2*time.Minute+InwardBackdate)/time.Second); got != want {
			t.Fatalf("validity %ds, want %ds", got, want)
		}
		if int64(cert.ValidAfter) != now.Add(-InwardBackdate).Unix() {
			t.Fatalf("valid after %d, want backdated", cert.ValidAfter)
		}
		if _, ok := cert.Extensions[ExtPermitPTY]; !ok {
			t.Fatal("no permit-pty")
		}
		if _, ok := cert.Extensions[ExtPermitPortForwarding]; ok != fwd {
			t.Fatalf("permit-port-forwarding %v with forwarding %v", ok, fwd)
		}
		if _, ok := cert.Extensions[ExtPermitAgentForwarding]; ok != agent {
			t.Fatalf("permit-agent-forwarding %v with agent forwarding %v", ok, agent)
		}
		for _, e := range []string{"permit-X11-forwarding", "permit-user-rc"} {
			if _, ok := cert.Extensions[e]; ok {
				t.Fatalf("%s granted", e)
			}
		}
		if string(in.Signer.PublicKey().Marshal()) != string(cert.Marshal()) {
			t.Fatal("signer does not present the certificate")
		}
	}
	if _, err := (&CA{}).SignInward("x", "", time.Minute, false, false); !errors.Is(err, ErrNoCA) {
		t.Fatalf("no CA: %v", err)
	}
}

func TestHostKeyCallback(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	own, other := newCA(t), newCA(t)
	own.Now = func() time.Time { return now }
	other.Now = own.Now
	dir := t.TempDir()
	trust := NewTrust(dir, own, nil)
	hostKey := newSigner(t).PublicKey()
	cert := func(c *CA, principals ...string) ssh.PublicKey {
		ct, err := c.SignHost(hostKey, principals, "h", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	revoked := cert(own, "web-1")
	if _, err := AppendRevocation(dir, "serial "+strconv.FormatUint(revoked.(*ssh.Certificate).Serial, 10), ""); err != nil {
		t.Fatal(err)
	}
	userCert, _ := own.SignUser(UserCert{Key: hostKey, Principals: []string{"web-1"}, TTL: time.Hour})
	cases := []struct {
		name string
		key  ssh.PublicKey
		at   time.Time
		want string
	}{
		{"good", cert(own, "web-1", "10.0.0.5"), now, ""},
		{"wrong principal", cert(own, "web-2"), now, "principal"},
		{"expired", cert(own, "web-1"), now.Add(2 * time.Hour), "expired"},
		{"other CA", cert(other, "web-1"), now, "authorit"},
		{"plain key", hostKey, now, "not a certificate"},
		{"revoked", revoked, now, "revoked"},
		{"user cert", userCert, now, "type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at := c.at
			trust.Now = func() time.Time { return at }
			cb, err := trust.HostKeyCallback("web-1")
			if err != nil {
				t.Fatal(err)
			}
			err = cb("127.0.0.1:22", addr1, c.key)
			if c.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			var he *HostCertError
			if c.want != "" && (!errors.As(err, &he) || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("got %v, want a HostCertError mentioning %q", err, c.want)
			}
		})
	}
	if _, err := NewTrust(dir, nil, nil).HostKeyCallback("x"); !errors.Is(err, ErrNoCA) {
		t.Fatalf("no host CA: %v", err)
	}
}

func TestGateHostCert(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	c := newCA(t)
	c.Now = func() time.Time { return now }
	key := newSigner(t).PublicKey()
	path := filepath.Join(t.TempDir(), "ssh_host_ed25519_key-cert.pub")
	first, renewed, err := c.GateHostCert(key, path, []string{"gate.example"})
	if err != nil || !renewed {
		t.Fatalf("first: %v %v", renewed, err)
	}
	same, renewed, err := c.GateHostCert(key, path, []string{"gate.example"})
	if err != nil || renewed || same.Serial != first.Serial {
		t.Fatalf("unchanged: renewed %v serial %d/%d %v", renewed, same.Serial, first.Serial, err)
	}
	if _, renewed, _ = c.GateHostCert(key, path, []string{"other.example"}); !renewed {
		t.Fatal("new principals kept the old certificate")
	}
	now = now.Add(GateHostCertTTL - GateHostCertRenew + time.Hour)
	if _, renewed, _ = c.GateHostCert(key, path, []string{"other.example"}); !renewed {
		t.Fatal("an expiring certificate was kept")
	}
}

func TestParseRevocations(t *testing.T) {
	fp := sshkeys.Fingerprint(newSigner(t).PublicKey())
	cases := []struct {
		in   string
		want string // "" ok, else part of the error
	}{
		{"", ""},
		{"# nothing\n\n", ""},
		{"serial 42 # lost laptop\nkey " + fp + "\n", ""},
		{"serial -1", "serial"},
		{"serial x", "serial"},
		{"key MD5:aa", "SHA256"},
		{"key SHA256:short", "not a SHA256"},
		{"cert 1", "unknown entry"},
		{"serial 1 2", "line 1"},
	}
	for _, c := range cases {
		_, err := ParseRevocations([]byte(c.in))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("ParseRevocations(%q) = %v, want %q", c.in, err, c.want)
		}
	}
}

func TestParseSourceAddress(t *testing.T) {
	cases := []struct {
		list string
		addr net.Addr
		ok   bool
	}{
		{"127.0.0.1", addr1, true},
		{"127.0.0.0/8", addr2, true},
		{"10.0.0.0/8,127.0.0.2", addr2, true},
		{"10.0.0.0/8", addr1, false},
		{"127.0.0.1/32", addr2, false},
		{"", addr1, false},
		{"::1/128", addr1, false},
		{"bogus", addr1, false},
		{"127.0.0.1", &net.UnixAddr{Name: "x"}, false},
	}
	for _, c := range cases {
		if err := CheckSourceAddress(c.list, c.addr); (err == nil) != c.ok {
			t.Errorf("CheckSourceAddress(%q, %v) = %v, want ok=%v", c.list, c.addr, err, c.ok)
		}
	}
}

func TestParsePublicKeyNamesProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pub")
	os.WriteFile(bad, []byte("ssh-ed25519 AAAAnotbase64!!\n"), 0o644)
	two := filepath.Join(dir, "two.pub")
	line := sshkeys.AuthorizedLine(newSigner(t).PublicKey())
	os.WriteFile(two, []byte(line+"\n"+line+"\n"), 0o644)
	for path, want := range map[string]string{
		bad:                          "line 1: not an SSH public key",
		two:                          "line 2: more than one key",
		filepath.Join(dir, "absent"): "no such file",
	} {
		_, _, err := ReadPublicKeyFile(path)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("ReadPublicKeyFile(%s) = %v, want the path and %q", path, err, want)
		}
	}
}

func FuzzParseRevocations(f *testing.F) {
	f.Add([]byte("serial 42 # x\nkey SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n"))
	f.Add([]byte("serial 18446744073709551615"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRevocations(data)
		if err == nil && (r.Serials == nil || r.Keys == nil) {
			t.Fatal("nil maps without error")
		}
	})
}

func FuzzParseSourceAddress(f *testing.F) {
	f.Add("127.0.0.1/32,10.0.0.0/8")
	f.Add("::1,fe80::/10")
	f.Fuzz(func(t *testing.T, list string) {
		pfx, err := ParseSourceAddress(list)
		if err == nil && len(pfx) == 0 {
			t.Fatal("no prefixes without error")
		}
		_ = CheckSourceAddress(list, addr1)
	})
}

func FuzzParseTrusted(f *testing.F) {
	f.Add([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1cm7RxyGxQSRnlF2j6dQ1YVYjNB0G3zvhj+M4Jx0aS ca\n# c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := ParseTrusted(data)
		for _, k := range ks {
			if _, isCert := k.(*ssh.Certificate); isCert && err == nil {
				t.Fatal("a certificate accepted as a CA key")
			}
		}
	})
}

// The CA side of OpenSSH's cert-userkey matrix that ssh-keygen cannot make:
// an ssh-rsa (SHA-1) CA signature, a certificate as CA, a weak CA key.
func TestCheckUserCertCASide(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	rsaCA, _ := ssh.NewSignerFromSigner(rk)
	sha1CA, err := ssh.NewSignerWithAlgorithms(rsaCA.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSA})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := AppendTrusted(dir, rsaCA.PublicKey(), "rsa"); err != nil {
		t.Fatal(err)
	}
	trust := NewTrust(dir, nil, nil)
	user := newSigner(t).PublicKey()
	mk := func(s ssh.Signer) *ssh.Certificate {
		c := &ssh.Certificate{Key: user, Serial: 1, CertType: ssh.UserCert, ValidPrincipals: []string{"alice"},
			ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
		if err := c.SignCert(rand.Reader, s); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := trust.CheckUserCert(mk(rsaCA), "alice", addr1); err != nil {
		t.Fatalf("rsa-sha2 CA signature refused: %v", err)
	}
	if err := trust.CheckUserCert(mk(sha1CA), "alice", addr1); err == nil || !strings.Contains(err.Error(), "signature algorithm") {
		t.Fatalf("ssh-rsa (SHA-1) CA signature: %v, want refused", err)
	}
	asCA := mk(rsaCA)
	asCA.SignatureKey = mk(rsaCA) // a certificate as the authority (CVE-2025-49825 class)
	if err := trust.CheckUserCert(asCA, "alice", addr1); err == nil || !strings.Contains(err.Error(), "signed by a certificate") {
		t.Fatalf("certificate as CA: %v, want refused", err)
	}
	weak, _ := rsa.GenerateKey(rand.Reader, 2048)
	weakPub, _ := ssh.NewPublicKey(&weak.PublicKey)
	if _, err := AppendTrusted(dir, weakPub, ""); err == nil || !strings.Contains(err.Error(), "3072") {
		t.Fatalf("RSA-2048 CA trusted: %v", err)
	}
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add([]byte("# c\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1cm7RxyGxQSRnlF2j6dQ1YVYjNB0G3zvhj+M4Jx0aS k\n"))
	f.Add([]byte("ssh-ed25519 AAAA!!\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, _, err := ParsePublicKey(data)
		if (k == nil) != (err != nil) {
			t.Fatalf("key %v with error %v", k, err)
		}
	})
}
