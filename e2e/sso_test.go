package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/auth/oidc/oidctest"
	"github.com/sshgate/sshgate/internal/store/postgres/pgtest"
)

// ssoWorld is an in-process OpenID provider, one or two gates configured
// for single sign-on against it (two share a PostgreSQL store), and an
// upstream sshd target web-1 that members of group devs are granted.
type ssoWorld struct {
	p     *oidctest.Provider
	gates []*harness.Gate
	sshd  *harness.SSHD
	cfg   string
}

func ssoConfig(p *oidctest.Provider, dir, reuse, extra string) string {
	secret := filepath.Join(dir, "oidc-secret")
	if err := os.WriteFile(secret, []byte(p.ClientSecret()+"\n"), 0o600); err != nil {
		panic(err)
	}
	return fmt.Sprintf(`auth:
  oidc:
    issuer: %s
    client_id: %s
    client_secret_file: %s
    scopes: [openid, profile, email, groups]
    auto_provision: true
    reuse: %s
    grants:
      - group: devs
        target: web-1
        login: root
`, p.URL, p.ClientID(), secret, reuse) + extra
}

func newSSOWorld(t *testing.T, gates int, reuse, extra string) *ssoWorld {
	t.Helper()
	gateOnly(t)
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	p := oidctest.Start(t, oidctest.Options{})
	p.AddUser(oidctest.User{Username: "alice", Email: "alice@example.com", Groups: []string{"devs"}})
	p.AddUser(oidctest.User{Username: "bob", Groups: []string{"devs"}})
	dir := t.TempDir()
	yaml := ssoConfig(p, dir, reuse, extra)
	if gates > 1 {
		dsn, pwFile := pgtest.Config(t, pgtest.Schema(t))
		yaml += "store:\n  driver: postgres\n  dsn: '" + dsn + "'\n  password_file: '" + pwFile + "'\n"
	}
	cfg := filepath.Join(dir, "sshgate.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	w := &ssoWorld{p: p, cfg: cfg, sshd: harness.StartSSHD(t, harness.SSHDOptions{})}
	for i := 0; i < gates; i++ {
		// The CAs first: a running gate picks up `ca init` only when restarted.
		data := filepath.Join(t.TempDir(), "data")
		bin := harness.GateBinary(t)
		for _, args := range [][]string{{"init"}, {"ca", "init"}} {
			if r := harness.Run(exec.Command(bin, append([]string{"--data", data, "--config", cfg}, args...)...), nil, short); r.Code != 0 {
				t.Fatalf("%v: exit %d: %s", args, r.Code, r.Stderr)
			}
		}
		g := harness.StartGate(t, harness.GateOptions{DataDir: data, Args: []string{"--config", cfg}, Env: []string{"SSHGATE_CONFIG=" + cfg}})
		w.sshd.Authorize(t, g.GateKey(t))
		w.gates = append(w.gates, g)
	}
	g := w.gates[0]
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", w.sshd.Addr, "--login", "root", "--host-key", w.sshd.HostKeyPub)
	return w
}

// client is user on gate i with a fresh key (the gate knows none of it).
func (w *ssoWorld) client(t *testing.T, i int, user string) *harness.Client {
	key, _ := harness.Keygen(t, t.TempDir(), "id_"+user)
	return w.gates[i].Client(user, key)
}

var userCodeRe = regexp.MustCompile(`enter the code ([A-Z0-9]{4}-[A-Z0-9]{4})`)

// ssoLogin runs `ssh TARGET echo logged-in` under a pty with
// keyboard-interactive on; when the device prompt shows, browser acts on
// its code and Enter is pressed. It returns the output, whether the
// command ran, and the time from Enter to the command's output.
func ssoLogin(t *testing.T, c *harness.Client, target string, browser func(code string) error) (out string, ok bool, took time.Duration) {
	t.Helper()
	cmd := c.WithOpts("BatchMode=no", "KbdInteractiveAuthentication=yes", "NumberOfPasswordPrompts=1").
		SSHTo(target, nil, "echo", "logged-in")
	s := startPTY(t, cmd, 50, 120)
	deadline := time.After(short)
	var entered time.Time
	for {
		if m := userCodeRe.FindStringSubmatch(s.out.String()); m != nil && entered.IsZero() && strings.Contains(s.out.String(), "Press Enter") {
			if err := browser(m[1]); err != nil {
				t.Errorf("browser: %v", err)
			}
			entered = time.Now()
			fmt.Fprint(s.ptmx, "\r")
		}
		if !entered.IsZero() && took == 0 && strings.Contains(s.out.String(), "logged-in\r\n") {
			took = time.Since(entered)
		}
		select {
		case err := <-s.done:
			out = s.out.String()
			if took == 0 && !entered.IsZero() && strings.Contains(out, "logged-in") {
				took = time.Since(entered)
			}
			return out, err == nil && strings.Contains(out, "logged-in"), took
		case <-deadline:
			t.Fatalf("ssh still running after %s; output %q", short, s.out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestSSODeviceLogin(t *testing.T) {
	t.Parallel()
	w := newSSOWorld(t, 1, "10m", "")
	g := w.gates[0]
	alice := w.client(t, 0, "alice")

	// Unknown to the gate: the prompt, the browser approves, a shell on
	// web-1 through the grant the devs group gives.
	out, ok, _ := ssoLogin(t, alice, "web-1", func(code string) error { return w.p.Approve(code, "alice") })
	if !ok {
		t.Fatalf("device login failed: %q", out)
	}
	for _, want := range []string{"sshgate: sign in with your identity provider", w.p.URL + "/device?user_code=", "█"} {
		if !strings.Contains(out, want) {
			t.Errorf("prompt lacks %q:\n%s", want, out)
		}
	}
	if users := g.Admin(t, "user", "list"); !strings.Contains(users, "alice") {
		t.Fatalf("alice not provisioned: %q", users)
	}
	if keys := g.Admin(t, "key", "list", "alice"); strings.Contains(keys, "SHA256:") {
		t.Fatalf("a provider-only user got a key: %q", keys)
	}

	// The reuse window: the same key, no keyboard-interactive at all.
	r := harness.Run(alice.SSHTo("web-1", nil, "echo", "again"), nil, short)
	if r.Code != 0 || r.Stdout != "again\n" {
		t.Fatalf("reuse: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if l := g.Admin(t, "sso", "list"); !strings.Contains(l, "alice") || !strings.Contains(l, "127.0.0.1/32") || !strings.Contains(l, "pwd,otp") {
		t.Fatalf("sso list: %q", l)
	}
	// whoami says how.
	if r := harness.MustRun(t, alice.SSHTo("", nil, "whoami"), nil, short); !strings.Contains(r.Stdout, "method  oidc") {
		t.Fatalf("whoami: %q", r.Stdout)
	}

	// cert: a certificate of the client CA for this key, used with
	// CertificateFile once the reuse window is revoked.
	r = harness.MustRun(t, alice.SSHTo("", nil, "cert"), nil, short)
	if !strings.HasPrefix(r.Stdout, "ssh-ed25519-cert-v01@openssh.com ") {
		t.Fatalf("cert: %q", r.Stdout)
	}
	certFile := alice.Key + "-sso-cert.pub"
	if err := os.WriteFile(certFile, []byte(r.Stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	kg := harness.MustRun(t, exec.Command("ssh-keygen", "-L", "-f", certFile), nil, short)
	for _, want := range []string{"Principals: \n                alice", "source-address 127.0.0.1/32", "permit-pty"} {
		if !strings.Contains(kg.Stdout, want) {
			t.Errorf("certificate lacks %q:\n%s", want, kg.Stdout)
		}
	}
	if out := g.Admin(t, "sso", "revoke", "alice"); !strings.Contains(out, "revoked 1") {
		t.Fatalf("sso revoke: %q", out)
	}
	if r := harness.Run(alice.SSHTo("web-1", nil, "echo", "x"), nil, short); r.Code != 255 {
		t.Fatalf("after revoke the key alone still logs in: exit %d %q", r.Code, r.Stdout)
	}
	r = harness.Run(alice.WithOpts("CertificateFile="+certFile).SSHTo("web-1", nil, "echo", "by-cert"), nil, short)
	if r.Code != 0 || r.Stdout != "by-cert\n" {
		t.Fatalf("CertificateFile login: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}

	// Denied at the provider: one line, no shell.
	bob := w.client(t, 0, "bob")
	out, ok, _ = ssoLogin(t, bob, "web-1", w.p.Deny)
	if ok || !strings.Contains(out, "sshgate: sign-in was denied by the identity provider (ref ") {
		t.Fatalf("denied: ok %v\n%s", ok, out)
	}
	// Signing in as someone else is refused.
	out, ok, _ = ssoLogin(t, bob, "web-1", func(code string) error { return w.p.Approve(code, "alice") })
	if ok || !strings.Contains(out, `sshgate: you signed in as "alice", not "bob"`) {
		t.Fatalf("other user: ok %v\n%s", ok, out)
	}

	// Groups: out of devs, the grant goes at the next sign-in.
	w.p.SetGroups("alice", "staff")
	alice2 := w.client(t, 0, "alice")
	out, ok, _ = ssoLogin(t, alice2, "web-1", func(code string) error { return w.p.Approve(code, "alice") })
	if ok || !strings.Contains(out, `target "web-1" not found or not permitted`) {
		t.Fatalf("after leaving devs: ok %v\n%s", ok, out)
	}
	if gl := g.Admin(t, "grant", "list", "alice"); strings.Contains(gl, "web-1") {
		t.Fatalf("grant kept after the group went: %q", gl)
	}
	// Back in devs: the reuse window carries the groups of its sign-in,
	// so the grant comes back at the next sign-in (forced by a revoke).
	w.p.SetGroups("alice", "devs")
	if r := harness.Run(alice2.SSHTo("web-1", nil, "echo", "x"), nil, short); r.Code == 0 {
		t.Fatal("the reuse window re-read the groups")
	}
	g.Admin(t, "sso", "revoke", "alice")
	if _, ok, _ := ssoLogin(t, alice2, "web-1", func(code string) error { return w.p.Approve(code, "alice") }); !ok {
		t.Fatal("back in devs: no shell")
	}

	// The audit stream names the method, the subject and the amr.
	a := &auditLog{path: filepath.Join(g.DataDir, "audit", "audit.jsonl")}
	found := false
	for _, e := range a.next(t) {
		if e["type"] == "conn.open" && e["auth_method"] == "oidc" && e["sso_subject"] == "sub-alice" && fmt.Sprint(e["amr"]) == "[pwd otp]" {
			found = true
		}
	}
	if !found {
		t.Error("no conn.open event with auth_method oidc, sso_subject and amr")
	}
	// Canaries: the client secret, the user codes and tokens never reach the log.
	logs := g.Stderr.String()
	if strings.Contains(logs, w.p.ClientSecret()) || strings.Contains(logs, "eyJ") || userCodeRe.MatchString(logs) {
		t.Fatalf("a secret, token or code in the gate's log:\n%s", logs)
	}
	for _, m := range userCodeRe.FindAllStringSubmatch(out, -1) {
		if strings.Contains(logs, m[1]) {
			t.Fatalf("user code %s in the log", m[1])
		}
	}
}

// The reuse window is the store's: a device login through gate A lets the
// same key in through gate B, and `sso revoke` ends it on both.
func TestSSOReuseAcrossGates(t *testing.T) {
	t.Parallel()
	w := newSSOWorld(t, 2, "10m", "")
	a := w.client(t, 0, "alice")
	if out, ok, _ := ssoLogin(t, a, "web-1", func(code string) error { return w.p.Approve(code, "alice") }); !ok {
		t.Fatalf("device login through gate A: %q", out)
	}
	b := w.gates[1].Client("alice", a.Key)
	if r := harness.Run(b.SSHTo("web-1", nil, "echo", "via-b"), nil, short); r.Code != 0 || r.Stdout != "via-b\n" {
		t.Fatalf("reuse through gate B: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	w.gates[1].Admin(t, "sso", "revoke", "alice")
	for i, c := range []*harness.Client{a, b} {
		if r := harness.Run(c.SSHTo("web-1", nil, "echo", "x"), nil, short); r.Code != 255 {
			t.Fatalf("gate %d after revoke: exit %d", i, r.Code)
		}
	}
}

// The reuse window ends when it should: then the key alone is refused
// and a new sign-in is due.
func TestSSOReuseExpires(t *testing.T) {
	t.Parallel()
	w := newSSOWorld(t, 1, "3s", "")
	a := w.client(t, 0, "alice")
	if out, ok, _ := ssoLogin(t, a, "web-1", func(code string) error { return w.p.Approve(code, "alice") }); !ok {
		t.Fatalf("device login: %q", out)
	}
	if !harness.Eventually(30*time.Second, func() bool {
		return harness.Run(a.SSHTo("web-1", nil, "echo", "x"), nil, short).Code == 255
	}) {
		t.Fatal("the key alone still logs in 30 s after a 3 s window")
	}
	if l := w.gates[0].Admin(t, "sso", "list", "--all"); !strings.Contains(l, "expired") {
		t.Fatalf("sso list --all: %q", l)
	}
}

// Time from Enter (code approved) to the command's output, median of 20
// device logins against the local provider; and logins per second of a
// reused single sign-on against a plain key login, in the same run.
// Run with SSHGATE_SSO_FIGURES=1.
func TestSSOFigures(t *testing.T) {
	if os.Getenv("SSHGATE_SSO_FIGURES") == "" {
		t.Skip("figures: set SSHGATE_SSO_FIGURES=1")
	}
	w := newSSOWorld(t, 1, "10m", "")
	g := w.gates[0]
	var took []time.Duration
	for i := 0; i < 20; i++ {
		c := w.client(t, 0, "alice")
		// Approved at once, before Enter, as a user who signs in first.
		_, ok, d := ssoLogin(t, c, "web-1", func(code string) error { return w.p.Approve(code, "alice") })
		if !ok {
			t.Fatal("device login failed")
		}
		took = append(took, d)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("Enter to command output, device login: median %d ms (min %d, max %d, n=20)",
		took[10].Milliseconds(), took[0].Milliseconds(), took[19].Milliseconds())

	reused := w.client(t, 0, "alice")
	if _, ok, _ := ssoLogin(t, reused, "web-1", func(code string) error { return w.p.Approve(code, "alice") }); !ok {
		t.Fatal("device login failed")
	}
	plain := g.AddUser(t, "carol")
	g.Admin(t, "grant", "carol", "--target", "web-1", "--login", "root")
	rate := func(c *harness.Client) float64 {
		const n = 30
		start := time.Now()
		for i := 0; i < n; i++ {
			harness.MustRun(t, c.SSHTo("", nil, "whoami"), nil, short)
		}
		return n / time.Since(start).Seconds()
	}
	for round := 0; round < 2; round++ {
		t.Logf("logins/s (ssh USER@gate whoami, sequential): reused sso %.1f, plain key %.1f", rate(reused), rate(plain))
	}
}

// Ansible (Debian's ansible-core) through the gate after one device login:
// -m ping and -m copy ride on the reuse window, no prompt.
func TestSSOAnsible(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "ansible")
	w := newSSOWorld(t, 1, "10m", "")
	g := w.gates[0]
	a := w.client(t, 0, "alice")
	if out, ok, _ := ssoLogin(t, a, "web-1", func(code string) error { return w.p.Approve(code, "alice") }); !ok {
		t.Fatalf("device login: %q", out)
	}
	dir := t.TempDir()
	inv := filepath.Join(dir, "hosts")
	args := strings.Join([]string{"-F", "none", "-o", "UserKnownHostsFile=" + g.KnownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none"}, " ")
	line := fmt.Sprintf("web-1 ansible_host=%s ansible_port=%d ansible_user=alice+web-1 ansible_ssh_private_key_file=%s ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args='%s'\n",
		g.Host, g.Port, a.Key, args)
	if err := os.WriteFile(inv, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "payload.txt")
	if err := os.WriteFile(src, []byte("copied through the gate by ansible\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "payload.txt")
	ansible := func(args ...string) harness.Result {
		cmd := exec.Command("ansible", append([]string{"-i", inv, "web-1"}, args...)...)
		cmd.Env = append(os.Environ(), "ANSIBLE_HOME="+filepath.Join(dir, "ansible"), "ANSIBLE_SSH_ARGS=", "ANSIBLE_HOST_KEY_CHECKING=True",
			"ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp"), "ANSIBLE_NOCOLOR=1", "SSH_AUTH_SOCK=", "PATH=/usr/bin:/bin:/usr/sbin:/sbin")
		return harness.Run(cmd, nil, 2*short)
	}
	if r := ansible("-m", "ping"); r.Code != 0 || !strings.Contains(r.Stdout, `"ping": "pong"`) {
		t.Fatalf("ansible -m ping: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := ansible("-m", "copy", "-a", "src="+src+" dest="+dest); r.Code != 0 || !strings.Contains(r.Stdout, "CHANGED") {
		t.Fatalf("ansible -m copy: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if b, err := os.ReadFile(dest); err != nil || string(b) != "copied through the gate by ansible\n" {
		t.Fatalf("copied file: %q, %v", b, err)
	}
}
