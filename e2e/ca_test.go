package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// caWorld is a gate with its own CA (`sshgate ca init` before the first
// start), and a real sshd that trusts the gate's user CA and presents a
// host certificate from the gate's host CA, with NO gate key in its
// authorized_keys. Target web (login root) is added with no pinned host key.
// Users' known_hosts hold only the @cert-authority line.
type caWorld struct {
	gate       *harness.Gate
	sshd       *harness.SSHD
	knownHosts string // @cert-authority * HOSTCA
	dir        string
}

func runGateCLI(t *testing.T, data string, args ...string) harness.Result {
	t.Helper()
	cmd := exec.Command(harness.GateBinary(t), append(args, "--data", data)...)
	return harness.Run(cmd, nil, short)
}

func newCAWorld(t *testing.T) *caWorld {
	t.Helper()
	gateOnly(t)
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	w := &caWorld{dir: t.TempDir()}
	data := filepath.Join(w.dir, "data")
	// Only serve and init create a data directory.
	if r := runGateCLI(t, data, "init"); r.Code != 0 {
		t.Fatalf("init: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := runGateCLI(t, data, "ca", "init"); r.Code != 0 {
		t.Fatalf("ca init: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	// The target: its host key certified by the gate's host CA for
	// 127.0.0.1, and the gate's user CA trusted.
	hostKey, _ := harness.Keygen(t, w.dir, "target_host_key")
	if r := runGateCLI(t, data, "ca", "sign-host", "--principal", "127.0.0.1,web.internal", hostKey+".pub"); r.Code != 0 {
		t.Fatalf("ca sign-host: %d %s", r.Code, r.Stderr)
	}
	userCA := runGateCLI(t, data, "ca", "show", "user")
	trusted := filepath.Join(w.dir, "trusted_user_ca_keys")
	if err := os.WriteFile(trusted, []byte(userCA.Stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	w.sshd = harness.StartSSHD(t, harness.SSHDOptions{HostKey: hostKey, HostCertificate: hostKey + "-cert.pub", TrustedUserCAKeys: trusted})

	w.gate = harness.StartGate(t, harness.GateOptions{DataDir: data})
	hostCA := strings.TrimSpace(w.gate.Admin(t, "ca", "show", "host"))
	if !strings.HasPrefix(hostCA, "@cert-authority * ssh-ed25519 ") {
		t.Fatalf("ca show host: %q", hostCA)
	}
	w.knownHosts = filepath.Join(w.dir, "known_hosts_ca")
	if err := os.WriteFile(w.knownHosts, []byte(hostCA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.gate.Admin(t, "env", "add", "prod")
	// No pin: the mode chosen is said, and checked now against the target.
	out := w.gate.Admin(t, "target", "add", "web", "--env", "prod", "--upstream", w.sshd.Addr, "--login", "root")
	if !strings.Contains(out, "none pinned, so each connection verifies a host certificate from the gate's host CA") ||
		!strings.Contains(out, `verified now: `+w.sshd.Addr+` presents a host certificate from the gate's host CA for "127.0.0.1"`) {
		t.Fatalf("target add without a pin: %q", out)
	}
	return w
}

// user adds a gate user with no key of its own and returns a client trusting
// the gate only through the host CA.
func (w *caWorld) user(t *testing.T, name string, grant ...string) *harness.Client {
	t.Helper()
	w.gate.Admin(t, "user", "add", name)
	for _, target := range grant {
		w.gate.Admin(t, "grant", name, "--target", target)
	}
	return &harness.Client{Host: w.gate.Host, Port: w.gate.Port, User: name, KnownHosts: w.knownHosts}
}

// certKey makes a key pair and has the gate sign it for user with args.
func (w *caWorld) certKey(t *testing.T, user string, args ...string) (key, cert, serial string) {
	t.Helper()
	key, _ = harness.Keygen(t, t.TempDir(), "id_"+user)
	out := w.gate.Admin(t, append([]string{"ca", "sign-user", user, key + ".pub"}, args...)...)
	m := regexp.MustCompile(`serial (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("sign-user printed %q", out)
	}
	return key, key + "-cert.pub", m[1]
}

func withCert(c *harness.Client, key, cert string) *harness.Client {
	return c.WithKey(key).WithOpts("CertificateFile=" + cert)
}

func TestCertificates(t *testing.T) {
	t.Parallel()
	w := newCAWorld(t)
	base := w.user(t, "alice", "web")

	t.Run("user cert in, login cert to a CA-trusting sshd, host certs both ways", func(t *testing.T) {
		key, cert, serial := w.certKey(t, "alice", "--ttl", "1h")
		r := harness.Run(withCert(base, key, cert).SSHTo("web", nil, "echo via-cert; whoami"), nil, short)
		if r.Code != 0 || r.Stdout != "via-cert\nroot\n" {
			t.Fatalf("exit %d stdout %q stderr %q (%v)", r.Code, r.Stdout, r.Stderr, r.Err)
		}
		if !w.gate.Stderr.WaitFor("serial="+serial, short) || !w.gate.LogContains("user certificate accepted") {
			t.Errorf("gate did not log the user certificate serial %s", serial)
		}
		if !w.gate.LogContains("login certificate issued") {
			t.Error("gate did not log the login certificate it issued")
		}
		// sshd logs the certificate's key id: it names the gate user.
		if !w.sshd.Stderr.WaitFor("ID sshgate user=alice target=web conn=", short) {
			t.Errorf("sshd did not log a certificate login for alice:\n%s", w.sshd.Stderr.String())
		}
	})

	t.Run("a certificate the gate issues to a user does not open targets directly", func(t *testing.T) {
		// The sshd trusts the gate's user CA; sign-user certificates come
		// from the client CA, so a "root" certificate gets nowhere there.
		w.gate.Admin(t, "user", "add", "root") // sign-user refuses users the gate does not know
		key, cert, _ := w.certKey(t, "root")
		direct := withCert(harness.Direct(t, w.sshd, "root", key), key, cert)
		r := harness.Run(direct.SSHTo("", nil, "echo direct"), nil, short)
		if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Fatalf("direct login to the target with a gate-issued cert: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("user cert from an external CA made by ssh-keygen", func(t *testing.T) {
		dir := t.TempDir()
		extCA, _ := harness.Keygen(t, dir, "ext_ca")
		w.gate.Admin(t, "ca", "trust-user-ca", extCA+".pub")
		key, _ := harness.Keygen(t, dir, "id_ext")
		if out, err := exec.Command("ssh-keygen", "-q", "-s", extCA, "-I", "ext-alice", "-n", "alice", "-z", "4242", "-V", "-5m:+1h", key+".pub").CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -s: %v %s", err, out)
		}
		c := withCert(base, key, key+"-cert.pub")
		r := harness.Run(c.SSHTo("web", nil, "echo ext"), nil, short)
		if r.Code != 0 || r.Stdout != "ext\n" {
			t.Fatalf("external CA cert: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
		// Expired (ssh-keygen -V in the past): refused.
		old, _ := harness.Keygen(t, dir, "id_old")
		if out, err := exec.Command("ssh-keygen", "-q", "-s", extCA, "-I", "old", "-n", "alice", "-V", "19800101:19900101", old+".pub").CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -s -V: %v %s", err, out)
		}
		if r := harness.Run(withCert(base, old, old+"-cert.pub").SSHTo("web", nil, "true"), nil, short); r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Fatalf("expired cert: exit %d %q", r.Code, r.Stderr)
		}
		if !w.gate.Stderr.WaitFor("expired", short) {
			t.Error("the gate did not log the expired certificate")
		}
		// Revoked serial: refused at the next connection.
		w.gate.Admin(t, "ca", "revoke", "4242")
		if !strings.Contains(w.gate.Admin(t, "ca", "revoked"), "4242") {
			t.Error("ca revoked does not list 4242")
		}
		r = harness.Run(c.SSHTo("web", nil, "echo ext"), nil, short)
		if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Fatalf("revoked serial: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("principal of another user refused", func(t *testing.T) {
		w.user(t, "bob", "web")
		key, cert, _ := w.certKey(t, "bob")
		r := harness.Run(withCert(base, key, cert).SSHTo("web", nil, "true"), nil, short) // as alice
		if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Fatalf("bob's cert logged in as alice: exit %d %q", r.Code, r.Stderr)
		}
	})

	t.Run("source-address from the wrong address refused", func(t *testing.T) {
		key, cert, _ := w.certKey(t, "alice", "--source-address", "127.0.0.1/32")
		c := withCert(base, key, cert)
		r := harness.Run(c.SSH("-b", "127.0.0.2", c.Dest("web"), "echo from-2"), nil, short)
		if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Fatalf("from 127.0.0.2: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
		r = harness.Run(c.SSH("-b", "127.0.0.1", c.Dest("web"), "echo from-1"), nil, short)
		if r.Code != 0 || r.Stdout != "from-1\n" {
			t.Fatalf("from 127.0.0.1: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("force-command replaces the command on the target", func(t *testing.T) {
		key, cert, _ := w.certKey(t, "alice", "--force-command", "echo forced")
		r := harness.Run(withCert(base, key, cert).SSHTo("web", nil, "echo asked"), nil, short)
		if r.Code != 0 || r.Stdout != "forced\n" {
			t.Fatalf("force-command: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("certificate extensions: permit-pty and permit-port-forwarding", func(t *testing.T) {
		dave := w.user(t, "dave")
		w.gate.Admin(t, "grant", "dave", "--target", "web", "--forwarding")
		key, cert, _ := w.certKey(t, "dave", "--no-pty")
		r := harness.Run(withCert(dave, key, cert).SSHTo("web", []string{"-tt"}, "tty >/dev/null && echo tty || echo no-tty"), nil, short)
		// The gate refuses the pty-req; ssh -tt then gives up (exit 255).
		if strings.Contains(r.Stdout, "tty\r\n") && !strings.Contains(r.Stdout, "no-tty") || !strings.Contains(r.Stderr, "PTY allocation request failed") {
			t.Errorf("--no-pty cert: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
		// ssh -W opens a direct-tcpip channel: to the sshd itself, whose
		// banner comes back when forwarding is allowed.
		key, cert, _ = w.certKey(t, "dave")
		r = harness.Run(withCert(dave, key, cert).SSHTo("web", []string{"-W", w.sshd.Addr}), nil, short)
		if !strings.HasPrefix(r.Stdout, "SSH-2.0-") {
			t.Errorf("forwarding cert: -W got %q %q", r.Stdout, r.Stderr)
		}
		key, cert, _ = w.certKey(t, "dave", "--no-port-forwarding")
		r = harness.Run(withCert(dave, key, cert).SSHTo("web", []string{"-W", w.sshd.Addr}), nil, short)
		if strings.HasPrefix(r.Stdout, "SSH-2.0-") || !strings.Contains(r.Stderr, "prohibited") {
			t.Errorf("--no-port-forwarding cert: -W got %q %q", r.Stdout, r.Stderr)
		}
	})

	t.Run("force-command with no target runs as a gate command", func(t *testing.T) {
		key, cert, _ := w.certKey(t, "alice", "--force-command", "ls")
		r := harness.Run(withCert(base, key, cert).SSHTo("", nil, "help"), nil, short)
		if r.Code != 0 || !strings.Contains(r.Stdout, "TARGET") || !strings.Contains(r.Stdout, "web") {
			t.Fatalf("force-command ls: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("host principal mismatch refused", func(t *testing.T) {
		w.gate.Admin(t, "target", "add", "web-wrongname", "--env", "prod", "--upstream", w.sshd.Addr, "--login", "root", "--host-principal", "db.internal")
		w.gate.Admin(t, "grant", "alice", "--target", "web-wrongname")
		key, cert, _ := w.certKey(t, "alice")
		r := harness.Run(withCert(base, key, cert).SSHTo("web-wrongname", nil, "echo no"), nil, short)
		line := oneLine(t, "stderr", r.Stderr)
		if r.Code != 1 || r.Stdout != "" || !strings.Contains(line, `target "web-wrongname" presented an unexpected host key; refusing to connect (ref `) {
			t.Fatalf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		noGoError(t, "stderr", r.Stderr)
	})

	t.Run("host cert from another CA refused", func(t *testing.T) {
		dir := t.TempDir()
		otherCA, _ := harness.Keygen(t, dir, "other_host_ca")
		hk, _ := harness.Keygen(t, dir, "evil_host_key")
		if out, err := exec.Command("ssh-keygen", "-q", "-s", otherCA, "-h", "-I", "evil", "-n", "127.0.0.1", hk+".pub").CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -s -h: %v %s", err, out)
		}
		trusted := filepath.Join(w.dir, "trusted_user_ca_keys")
		evil := harness.StartSSHD(t, harness.SSHDOptions{HostKey: hk, HostCertificate: hk + "-cert.pub", TrustedUserCAKeys: trusted})
		w.gate.Admin(t, "target", "add", "evil", "--env", "prod", "--upstream", evil.Addr, "--login", "root", "--host-ca")
		w.gate.Admin(t, "grant", "alice", "--target", "evil")
		key, cert, _ := w.certKey(t, "alice")
		r := harness.Run(withCert(base, key, cert).SSHTo("evil", nil, "echo no"), nil, short)
		if r.Code != 1 || !strings.Contains(r.Stderr, `target "evil" presented an unexpected host key; refusing to connect (ref `) {
			t.Fatalf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		if strings.Contains(evil.Stderr.String(), "Accepted") {
			t.Error("the gate logged in to a target whose host certificate it refused")
		}
	})

	t.Run("host-CA target without a host certificate", func(t *testing.T) {
		// A plain sshd, no certificate: target add says so at once, and
		// users get the host key line, not "unreachable".
		plain := harness.StartSSHD(t, harness.SSHDOptions{TrustedUserCAKeys: filepath.Join(w.dir, "trusted_user_ca_keys")})
		stdout, stderr, code := w.gate.AdminResult("target", "add", "nocert", "--env", "prod", "--upstream", plain.Addr, "--login", "root")
		if code != 0 || !strings.Contains(stdout, "added target nocert") ||
			!strings.Contains(stderr, "sshgate: warning: target nocert answers at "+plain.Addr+" but presents no host certificate") ||
			!strings.Contains(stderr, "sshgate ca sign-host --principal 127.0.0.1") {
			t.Fatalf("target add: exit %d stdout %q stderr %q", code, stdout, stderr)
		}
		w.gate.Admin(t, "grant", "alice", "--target", "nocert")
		key, cert, _ := w.certKey(t, "alice")
		r := harness.Run(withCert(base, key, cert).SSHTo("nocert", nil, "echo no"), nil, short)
		if r.Code != 1 || !strings.Contains(r.Stderr, `target "nocert" presented an unexpected host key; refusing to connect (ref `) {
			t.Fatalf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		oneLine(t, "no host certificate", r.Stderr)
		// One that does not answer yet is added, and said to be unchecked.
		stdout, _, code = w.gate.AdminResult("target", "add", "later", "--env", "prod", "--upstream", "127.0.0.1:1", "--login", "root")
		if code != 0 || !strings.Contains(stdout, "host key of later: not checked now (127.0.0.1:1 does not answer") {
			t.Fatalf("target add of a silent host: exit %d stdout %q", code, stdout)
		}
	})

	t.Run("bad input names the file and the problem", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.pub")
		os.WriteFile(bad, []byte("ssh-ed25519 not-base64!!\n"), 0o644)
		for _, args := range [][]string{
			{"ca", "sign-user", "alice", bad},
			{"ca", "sign-host", "--principal", "h", bad},
			{"ca", "trust-user-ca", bad},
			{"ca", "revoke", bad},
		} {
			_, stderr, code := w.gate.AdminResult(args...)
			if code != 2 || !strings.Contains(stderr, bad) || !strings.Contains(stderr, "not an SSH public key") {
				t.Errorf("sshgate %s: exit %d stderr %q", strings.Join(args, " "), code, stderr)
			}
		}
		_, stderr, code := w.gate.AdminResult("ca", "sign-user", "alice", bad+".absent")
		if code != 1 || !strings.Contains(stderr, "no such file") {
			t.Errorf("absent file: exit %d %q", code, stderr)
		}
		_, stderr, code = w.gate.AdminResult("ca", "show", "users")
		if code != 2 || !strings.Contains(stderr, `"users"`) {
			t.Errorf("ca show users: exit %d %q", code, stderr)
		}
	})
}

// A ca.trusted_user_ca_keys file that is not there stops serve at once: a
// typo must not silently trust nothing (or everything).
func TestCATrustedFileMissing(t *testing.T) {
	t.Parallel()
	gateOnly(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gate.yaml")
	missing := filepath.Join(dir, "nope.pub")
	if err := os.WriteFile(cfg, []byte("ca:\n  trusted_user_ca_keys: ["+missing+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runGateCLI(t, filepath.Join(dir, "data"), "serve", "--config", cfg, "--listen", "127.0.0.1:0")
	if r.Code != 2 || !strings.Contains(r.Stderr, "ca.trusted_user_ca_keys") || !strings.Contains(r.Stderr, missing) {
		t.Fatalf("serve with a missing trusted CA file: exit %d stderr %q", r.Code, r.Stderr)
	}
}

// A gate with a CA in front of a real sshd that does not trust it (the gate
// key is in its authorized_keys): the first login offers a certificate, is
// refused and logs in with the gate key; the next ones sign no certificate
// and log in with the gate key alone. Every login's audit record is whole.
func TestCertificateRefusedGateKeyFirst(t *testing.T) {
	t.Parallel()
	gateOnly(t)
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if r := runGateCLI(t, data, "init"); r.Code != 0 {
		t.Fatalf("init: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := runGateCLI(t, data, "ca", "init"); r.Code != 0 {
		t.Fatalf("ca init: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	sshd := harness.StartSSHD(t, harness.SSHDOptions{}) // no TrustedUserCAKeys
	g := harness.StartGate(t, harness.GateOptions{DataDir: data})
	sshd.Authorize(t, g.GateKey(t))
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "target", "add", "web", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := g.AddUser(t, "alice")
	g.Admin(t, "grant", "alice", "--target", "web", "--login", "root")
	aud := &auditLog{path: filepath.Join(data, "audit", "audit.jsonl")}
	const logins = 3
	for i := 0; i < logins; i++ {
		r := harness.Run(alice.SSHTo("web", nil, "echo ok"), nil, short)
		if r.Code != 0 || r.Stdout != "ok\n" {
			t.Fatalf("login %d: exit %d stdout %q stderr %q", i+1, r.Code, r.Stdout, r.Stderr)
		}
		seen := map[string]int{}
		for _, e := range aud.next(t) {
			seen[e["type"].(string)]++
		}
		for _, typ := range []string{"conn.open", "target.chosen", "session.start", "exec", "session.end", "conn.close"} {
			if seen[typ] != 1 {
				t.Errorf("login %d: %d %s audit events, want 1 (%v)", i+1, seen[typ], typ, seen)
			}
		}
	}
	log := g.Stderr.String()
	if n := strings.Count(log, "login certificate issued"); n != 1 {
		t.Errorf("%d login certificates issued in %d logins, want 1 (the first; none once the target refused it)", n, logins)
	}
	if n := strings.Count(log, "target refused the login certificate and took the gate key"); n != 1 {
		t.Errorf("the refusal logged %d times, want 1", n)
	}
	if n := strings.Count(sshd.Stderr.String(), "Accepted publickey for root"); n != logins {
		t.Errorf("sshd accepted the gate key %d times, want %d:\n%s", n, logins, sshd.Stderr.String())
	}
	if strings.Contains(sshd.Stderr.String(), "Accepted certificate") {
		t.Error("sshd took a certificate it does not trust")
	}
}
