package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestParseAuthorizedKeys(t *testing.T) {
	dir := t.TempDir()
	k1 := newTestKey(t, dir, "k1")
	k2 := newTestKey(t, dir, "k2")
	line1 := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k1.pub)))
	line2 := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k2.pub)))
	cert := &ssh.Certificate{Key: k1.pub, CertType: ssh.UserCert, ValidPrincipals: []string{"x"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, k2.signer); err != nil {
		t.Fatal(err)
	}
	certLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
	tests := []struct {
		name       string
		in         string
		users, cas int
		err        string
	}{
		{name: "empty", in: ""},
		{name: "comments and blanks", in: "# hi\n\n   \n" + line1 + " me@host\n", users: 1},
		{name: "ca", in: line1 + "\ncert-authority " + line2 + "\n", users: 1, cas: 1},
		{name: "ca upper case", in: "CERT-AUTHORITY " + line2, cas: 1},
		{name: "from option", in: `from="10.0.0.1" ` + line1, err: `line 1: option "from" is not supported`},
		{name: "restrict", in: "\n" + "restrict " + line1, err: `line 2: option "restrict"`},
		{name: "command", in: `cert-authority,command="/bin/true" ` + line1, err: `option "command"`},
		{name: "garbage", in: line1 + "\nnot a key\n", err: "line 2: not an authorized_keys line"},
		{name: "certificate", in: certLine, err: "a certificate is not a key"},
	}
	for _, tt := range tests {
		ks, err := ParseAuthorizedKeys([]byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if len(ks.users) != tt.users || len(ks.cas) != tt.cas {
			t.Errorf("%s: %d users %d cas", tt.name, len(ks.users), len(ks.cas))
		}
	}
}

func TestUnauthorizedKeyRefused(t *testing.T) {
	f := newFixture(t, "", nil)
	other := newTestKey(t, f.dir, "other")
	args := append(f.opensshOpts(other.path), "-o", "LogLevel=INFO", "-p", f.port, "x@127.0.0.1", "echo in")
	r := run(t, nil, "ssh", args...)
	if r.code != 255 || r.stdout != "" {
		t.Fatalf("code %d stdout %q", r.code, r.stdout)
	}
	mustContain(t, r.stderr, "Permission denied (publickey)")
	if _, err := f.client(t, "x", other.signer); err == nil {
		t.Fatal("x/crypto client with an unauthorized key got in")
	}
}

// The identity is the key that signed, not one merely offered (the
// CVE-2024-45337 pattern): offer the authorized victim's public key first
// without its private half, then sign with an unauthorized key.
func TestIdentityFromVerifiedKey(t *testing.T) {
	var logs syncBuffer
	f := newFixture(t, "", func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	mallory := newTestKey(t, f.dir, "mallory")
	pubOnly := filepath.Join(f.dir, "victim-pub-only")
	if err := os.WriteFile(pubOnly, ssh.MarshalAuthorizedKey(f.user.pub), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(f.opensshOpts(pubOnly), "-i", mallory.path, "-p", f.port, "x@127.0.0.1", "echo in")
	if r := run(t, nil, "ssh", args...); r.code != 255 || r.stdout != "" {
		t.Fatalf("victim.pub + mallory key: code %d stdout %q", r.code, r.stdout)
	}
	// And with both authorized, the log names the key that signed.
	f2 := newFixture(t, string(ssh.MarshalAuthorizedKey(mallory.pub)), func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	pubOnly2 := filepath.Join(f.dir, "victim2-pub-only")
	if err := os.WriteFile(pubOnly2, ssh.MarshalAuthorizedKey(f2.user.pub), 0o600); err != nil {
		t.Fatal(err)
	}
	args = append(f2.opensshOpts(pubOnly2), "-i", mallory.path, "-p", f2.port, "x@127.0.0.1", "echo in")
	if r := run(t, nil, "ssh", args...); r.code != 0 {
		t.Fatalf("code %d stderr %q", r.code, r.stderr)
	}
	eventually(t, 10*time.Second, "the connection log line", func() bool {
		return strings.Contains(logs.String(), "key="+ssh.FingerprintSHA256(mallory.pub))
	})
	if strings.Contains(logs.String(), ssh.FingerprintSHA256(f2.user.pub)) {
		t.Fatalf("log names the merely offered key: %s", logs.String())
	}
}

type certSpec struct {
	name       string
	user       string
	principals []string
	certType   uint32
	after      time.Time
	before     time.Time
	critical   map[string]string
	extensions map[string]string
	ca         ssh.Signer
	ok         bool
}

var allPermits = map[string]string{"permit-pty": "", "permit-port-forwarding": "", "permit-agent-forwarding": "",
	"permit-X11-forwarding": "", "permit-user-rc": ""}

func signCert(t *testing.T, key ssh.PublicKey, s certSpec) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key: key, Serial: 1, CertType: s.certType, KeyId: "test-" + s.name,
		ValidPrincipals: s.principals,
		ValidAfter:      uint64(s.after.Unix()), ValidBefore: uint64(s.before.Unix()),
		Permissions: ssh.Permissions{CriticalOptions: s.critical, Extensions: s.extensions},
	}
	if err := c.SignCert(rand.Reader, s.ca); err != nil {
		t.Fatal(err)
	}
	return c
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCertificates(t *testing.T) {
	ca := newSigner(t)
	otherCA := newSigner(t)
	f := newFixture(t, "cert-authority "+string(ssh.MarshalAuthorizedKey(ca.PublicKey())), nil)
	userKey := newSigner(t)
	now := time.Now()
	hour := time.Hour
	base := certSpec{user: "x", principals: []string{"x"}, certType: ssh.UserCert, after: now.Add(-hour),
		before: now.Add(hour), extensions: allPermits, ca: ca, ok: true}
	with := func(name string, mod func(*certSpec)) certSpec {
		s := base
		s.name = name
		mod(&s)
		return s
	}
	cases := []certSpec{
		with("valid", func(*certSpec) {}),
		with("principal among several", func(s *certSpec) { s.principals = []string{"a", "x", "b"} }),
		with("wildcard is literal", func(s *certSpec) { s.principals = []string{"*"}; s.ok = false }),
		with("wrong user", func(s *certSpec) { s.user = "y"; s.ok = false }),
		with("empty principals", func(s *certSpec) { s.principals = nil; s.ok = false }),
		with("expired", func(s *certSpec) { s.after, s.before = now.Add(-2*hour), now.Add(-hour); s.ok = false }),
		with("not yet valid", func(s *certSpec) { s.after, s.before = now.Add(hour), now.Add(2*hour); s.ok = false }),
		with("host cert", func(s *certSpec) { s.certType = ssh.HostCert; s.ok = false }),
		with("other CA", func(s *certSpec) { s.ca = otherCA; s.ok = false }),
		with("force-command", func(s *certSpec) { s.critical = map[string]string{"force-command": "/bin/true"}; s.ok = false }),
		with("unknown critical option", func(s *certSpec) { s.critical = map[string]string{"x@example.com": ""}; s.ok = false }),
		with("source-address ok", func(s *certSpec) { s.critical = map[string]string{"source-address": "127.0.0.0/8"} }),
		with("source-address wrong", func(s *certSpec) { s.critical = map[string]string{"source-address": "10.0.0.0/8"}; s.ok = false }),
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert := signCert(t, userKey.PublicKey(), tc)
			cs, err := ssh.NewCertSigner(cert, userKey)
			if err != nil {
				t.Fatal(err)
			}
			c, err := f.client(t, tc.user, cs)
			if (err == nil) != tc.ok {
				t.Fatalf("login: %v, want ok=%v", err, tc.ok)
			}
			if c == nil {
				return
			}
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			if out, err := s.Output("echo ok"); err != nil || string(out) != "ok\n" {
				t.Fatalf("exec: %q %v", out, err)
			}
		})
	}
	// The CA key itself is not a user key.
	if _, err := f.client(t, "x", ca); err == nil {
		t.Error("the CA key logged in as a plain key")
	}
	// Without permit-pty and permit-port-forwarding, no PTY and no forwarding.
	cert := signCert(t, userKey.PublicKey(), with("no permits", func(s *certSpec) { s.extensions = nil }))
	cs, _ := ssh.NewCertSigner(cert, userKey)
	c, err := f.client(t, "x", cs)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSession()
	if err := s.RequestPty("xterm", 24, 80, nil); err == nil {
		t.Error("pty granted without permit-pty")
	}
	if _, err := c.Dial("tcp", echoServer(t)); err == nil {
		t.Error("direct-tcpip granted without permit-port-forwarding")
	}
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("tcpip-forward granted without permit-port-forwarding")
	}
}

// A certificate made by ssh-keygen, used by OpenSSH.
func TestCertificateOpenSSH(t *testing.T) {
	dir := t.TempDir()
	ca := newTestKey(t, dir, "ca")
	f := newFixture(t, "cert-authority "+string(ssh.MarshalAuthorizedKey(ca.pub)), nil)
	user := newTestKey(t, f.dir, "certuser") // not in authorized_keys
	out, err := exec.Command("ssh-keygen", "-q", "-s", ca.path, "-I", "certuser", "-n", "x,deploy",
		"-V", "-5m:+1h", user.path+".pub").CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -s: %v %s", err, out)
	}
	certFile := user.path + "-cert.pub"
	for _, tc := range []struct {
		login string
		code  int
	}{{"x", 0}, {"deploy", 0}, {"root", 255}} {
		args := append(f.opensshOpts(user.path), "-o", "CertificateFile="+certFile, "-p", f.port, tc.login+"@127.0.0.1", "echo in")
		r := run(t, nil, "ssh", args...)
		if r.code != tc.code {
			t.Errorf("login %s: code %d, want %d; stderr %q", tc.login, r.code, tc.code, r.stderr)
		}
	}
}

// The authorized_keys file is re-read when it changes.
func TestAuthorizedKeysReload(t *testing.T) {
	f := newFixture(t, "", nil)
	late := newTestKey(t, f.dir, "late")
	if _, err := f.client(t, "x", late.signer); err == nil {
		t.Fatal("late key accepted before it was added")
	}
	ak := filepath.Join(f.dir, "authorized_keys")
	data, _ := os.ReadFile(ak)
	data = append(data, ssh.MarshalAuthorizedKey(late.pub)...)
	if err := os.WriteFile(ak, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client(t, "x", late.signer); err != nil {
		t.Fatalf("late key refused after it was added: %v", err)
	}
	// A broken file keeps the last good keys.
	if err := os.WriteFile(ak, []byte("garbage line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client(t, "x", late.signer); err != nil {
		t.Fatalf("last good keys lost: %v", err)
	}
}

// Only the listed algorithms are offered: OpenSSH gets in with each cipher
// and fails with anything else.
func TestAlgorithms(t *testing.T) {
	f := newFixture(t, "", nil)
	for _, tc := range []struct {
		opt string
		ok  bool
	}{
		{"Ciphers=aes128-gcm@openssh.com", true},
		{"Ciphers=aes256-gcm@openssh.com", true},
		{"Ciphers=chacha20-poly1305@openssh.com", true},
		{"Ciphers=aes128-ctr", false},
		{"KexAlgorithms=curve25519-sha256", true},
		{"KexAlgorithms=diffie-hellman-group14-sha256", false},
		{"KexAlgorithms=ecdh-sha2-nistp256", false},
		{"HostKeyAlgorithms=rsa-sha2-256", false},
	} {
		r := f.ssh(t, nil, []string{"-o", tc.opt}, "true")
		if (r.code == 0) != tc.ok {
			t.Errorf("%s: code %d, want ok=%v (stderr %q)", tc.opt, r.code, tc.ok, r.stderr)
		}
	}
}
