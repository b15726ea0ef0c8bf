package ca

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/sshkeys"
)

func TestJumpHostsCertified(t *testing.T) {
	c := newCA(t)
	now := time.Now()
	c.Now = func() time.Time { return now }
	key := newSigner(t)
	j := NewJumpHosts(c, []ssh.Signer{key})
	if !j.Certified() {
		t.Fatal("a CA with a host key: not certified")
	}
	certOf := func(name string) *ssh.Certificate {
		t.Helper()
		s, err := j.Signers(name)
		if err != nil || len(s) != 1 {
			t.Fatalf("Signers(%s): %v %v", name, s, err)
		}
		cert, ok := s[0].PublicKey().(*ssh.Certificate)
		if !ok {
			t.Fatalf("Signers(%s) presents %T, not a certificate", name, s[0].PublicKey())
		}
		return cert
	}
	web := certOf("web-1")
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		return string(k.Marshal()) == string(c.Host.PublicKey().Marshal())
	}, Clock: func() time.Time { return now }}
	if err := checker.CheckHostKey("web-1:22", nil, web); err != nil {
		t.Errorf("the certificate for web-1 does not verify as web-1: %v", err)
	}
	if err := checker.CheckHostKey("web-2:22", nil, web); err == nil {
		t.Error("the certificate for web-1 verifies as web-2")
	}
	if web.CertType != ssh.HostCert || len(web.ValidPrincipals) != 1 || string(web.Key.Marshal()) != string(key.PublicKey().Marshal()) {
		t.Errorf("certificate: type %d principals %v", web.CertType, web.ValidPrincipals)
	}
	if got := time.Unix(int64(web.ValidBefore), 0).Sub(now); got > JumpHostCertTTL || got < JumpHostCertTTL-time.Minute {
		t.Errorf("certificate valid for %s, want %s", got, JumpHostCertTTL)
	}
	if again := certOf("web-1"); again.Serial != web.Serial {
		t.Error("a second connection re-signed instead of using the cached certificate")
	}
	if other := certOf("db-1"); other.Serial == web.Serial || other.ValidPrincipals[0] != "db-1" {
		t.Errorf("db-1 got %v", other.ValidPrincipals)
	}
	now = now.Add(JumpHostCertTTL - jumpHostCertRenew + time.Second)
	if renewed := certOf("web-1"); renewed.Serial == web.Serial {
		t.Error("a certificate with less than the renewal margin left was presented again")
	}
	if _, err := j.Signers("bad name"); err == nil {
		t.Error("a principal with a space was signed")
	}
	lines := j.KnownHosts([]string{"web-1", "www"})
	want := "@cert-authority web-1,www " + sshkeys.AuthorizedLine(c.Host.PublicKey()) + " sshgate-ca-host"
	if len(lines) != 1 || lines[0] != want {
		t.Errorf("KnownHosts: %q, want %q", lines, want)
	}
	if j.KnownHosts(nil) != nil {
		t.Error("KnownHosts of no names is not empty")
	}
}

func TestJumpHostsPlain(t *testing.T) {
	key := newSigner(t)
	for _, c := range []*CA{nil, {User: newSigner(t)}} { // no CA; a CA without a host key
		j := NewJumpHosts(c, []ssh.Signer{key})
		if j.Certified() {
			t.Fatal("certified without a host CA")
		}
		s, err := j.Signers("web-1")
		if err != nil || len(s) != 1 || s[0] != key {
			t.Fatalf("Signers: %v %v, want the plain key", s, err)
		}
		lines := j.KnownHosts([]string{"web-1"})
		if len(lines) != 1 || lines[0] != "web-1 "+sshkeys.AuthorizedLine(key.PublicKey()) || strings.HasPrefix(lines[0], "@") {
			t.Errorf("KnownHosts: %q", lines)
		}
	}
}
