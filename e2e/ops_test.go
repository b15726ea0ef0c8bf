package e2e_test

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// `make build` stamps the binary with `git describe`, the commit and the
// build date; `sshgate version` and `--version` print them.
func TestMakeBuildStampsVersion(t *testing.T) {
	harness.RequireTools(t, "make", "git")
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	describe, err := exec.Command("git", "-C", root, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	bin := t.TempDir()
	mk := exec.Command("make", "-C", root, "build", "BIN="+bin, "GO="+goTool())
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	want := "sshgate " + strings.TrimSpace(string(describe)) + " (commit "
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(filepath.Join(bin, "sshgate"), arg).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), ", built 20") {
			t.Errorf("sshgate %s: %v, %q; want %q... with a build date", arg, err, out, want)
		}
	}
}

// goTool is the go command the test runs under.
func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// sshgate backup while a gate runs and writes, then sshgate restore into a
// new directory: a gate started on it has the same host key, the users and
// keys of the backup, and nothing written after it.
func TestBackupRestoreWhileServing(t *testing.T) {
	t.Parallel()
	g := harness.StartGate(t, harness.GateOptions{})
	alice := g.AddUser(t, "alice")
	g.Admin(t, "env", "add", "prod")
	// Writes the store keeps in its WAL until a checkpoint: a copy of
	// sshgate.db alone would miss them.
	for _, u := range []string{"u1", "u2", "u3"} {
		g.Admin(t, "user", "add", u)
	}
	if r := harness.Run(alice.SSHTo("", nil, "whoami"), nil, short); r.Code != 0 || !strings.Contains(r.Stdout, "alice") {
		t.Fatalf("whoami before the backup: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	backup := filepath.Join(t.TempDir(), "gate.tar")
	out := g.Admin(t, "backup", backup)
	if !strings.Contains(out, "wrote "+backup) {
		t.Fatalf("backup: %q", out)
	}
	g.Admin(t, "user", "add", "after-backup")
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file mode: %v %v", fi, err)
	}

	restored := filepath.Join(t.TempDir(), "restored")
	r := harness.Run(exec.Command(g.Bin, "--data", restored, "restore", backup), nil, short)
	if r.Code != 0 || !strings.Contains(r.Stdout, "restored ") {
		t.Fatalf("restore: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// Restoring over a directory in use is refused.
	if r := harness.Run(exec.Command(g.Bin, "--data", g.DataDir, "restore", backup), nil, short); r.Code != 1 || !strings.Contains(r.Stderr, "is not empty") {
		t.Fatalf("restore over the live data directory: %d %q", r.Code, r.Stderr)
	}
	g2 := harness.StartGate(t, harness.GateOptions{DataDir: restored})
	if g2.HostKey != g.HostKey {
		t.Fatalf("restored gate host key %q, want %q", g2.HostKey, g.HostKey)
	}
	users := g2.Admin(t, "user", "list")
	for _, u := range []string{"alice", "u1", "u2", "u3"} {
		if !strings.Contains(users, u+" ") {
			t.Errorf("restored store lacks user %s:\n%s", u, users)
		}
	}
	if strings.Contains(users, "after-backup") {
		t.Errorf("restored store has a user added after the backup:\n%s", users)
	}
	if g2.GateKey(t) != g.GateKey(t) {
		t.Errorf("restored gate key differs")
	}
	a2 := *alice
	a2.Port, a2.KnownHosts = g2.Port, g2.KnownHosts
	if r := harness.Run(a2.SSHTo("", nil, "whoami"), nil, short); r.Code != 0 || !strings.Contains(r.Stdout, "alice") {
		t.Fatalf("alice on the restored gate: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

// Under systemd (Type=notify) the gate sends READY=1 once it accepts
// connections and STOPPING=1 when it starts to drain: a unixgram socket
// stands in for systemd's NOTIFY_SOCKET.
func TestServeNotifiesSystemd(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	g := harness.StartGate(t, harness.GateOptions{Env: []string{"NOTIFY_SOCKET=" + sock}})
	read := func() string {
		buf := make([]byte, 4096)
		l.SetReadDeadline(time.Now().Add(short))
		n, err := l.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v\ngate stderr:\n%s", err, g.Stderr.String())
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1\nSTATUS=listening on "+g.Addr {
		t.Fatalf("first notification %q", got)
	}
	if err := g.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if got := read(); got != "STOPPING=1" {
		t.Fatalf("after SIGTERM: %q", got)
	}
}

// `make install` lays out the binaries, the unit (paths rewritten for
// PREFIX) and an example config that check-config accepts, and the unit
// passes `systemd-analyze verify`. (Booting it needs systemd as PID 1, which
// the test machines do not run.)
func TestMakeInstallSystemdUnit(t *testing.T) {
	harness.RequireTools(t, "make", "systemd-analyze")
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mk := exec.Command("make", "-C", root, "install", "BIN="+filepath.Join(dir, "build"), "GO="+goTool(),
		"PREFIX="+dir+"/usr", "SYSCONFDIR="+dir+"/etc", "UNITDIR="+dir+"/unit")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	unit := filepath.Join(dir, "unit", "sshgate.service")
	body, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify", "ExecStart=" + dir + "/usr/bin/sshgate serve --config " + dir + "/etc/sshgate/sshgate.yaml",
		"ExecStartPre=" + dir + "/usr/bin/sshgate check-config", "User=sshgate", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ReadWritePaths=/var/lib/sshgate", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(dir+"/usr/bin/sshgate", "check-config", "--config", dir+"/etc/sshgate/sshgate.yaml").CombinedOutput()
	if err != nil || !strings.HasSuffix(string(out), ": ok\n") {
		t.Fatalf("check-config of the installed example: %v %q", err, out)
	}
}

// startLongSession runs a session on web-1 that lasts until killed and
// waits until it runs; done closes when the client exits.
func startLongSession(t *testing.T, c *harness.Client) (cmd *exec.Cmd, stderr *harness.Buffer, done chan struct{}) {
	t.Helper()
	cmd = c.SSHTo("web-1", nil, "echo started; exec sleep 300")
	var stdout harness.Buffer
	stderr = &harness.Buffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done = make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	if !stdout.WaitFor("started", short) {
		t.Fatalf("session did not start: %q", stderr.String())
	}
	return cmd, stderr, done
}

// user remove ends the user's live sessions (the client reads the gate's
// one line and a non-zero status); --keep-sessions leaves them, saying so.
func TestUserRemoveEndsLiveSessions(t *testing.T) {
	t.Parallel()
	w := newObsWorld(t)
	start := func(c *harness.Client) (*exec.Cmd, *harness.Buffer, chan struct{}) { return startLongSession(t, c) }
	bob := w.gate.AddUser(t, "bob")
	w.gate.Admin(t, "grant", "bob", "--target", "web-1")
	_, _, bobDone := start(bob)
	if !harness.Eventually(short, func() bool { return len(liveSessions(t, w.gate)) == 1 }) {
		t.Fatal("bob's session is not live")
	}
	if out := w.gate.Admin(t, "user", "remove", "bob", "--keep-sessions"); !strings.Contains(out, "1 live sessions of bob keep running (--keep-sessions)") {
		t.Fatalf("remove --keep-sessions: %q", out)
	}
	select {
	case <-bobDone:
		t.Fatal("--keep-sessions ended the session")
	default:
	}

	cmd, stderr, done := start(w.alice)
	if !harness.Eventually(short, func() bool { return len(liveSessions(t, w.gate)) == 2 }) {
		t.Fatal("alice's session is not live")
	}
	out := w.gate.Admin(t, "user", "remove", "alice")
	if out != "removed user alice\nended 1 live sessions of alice\n" {
		t.Fatalf("user remove: %q", out)
	}
	select {
	case <-done:
	case <-time.After(short):
		t.Fatal("the removed user's client did not exit")
	}
	if code := cmd.ProcessState.ExitCode(); code == 0 || code == 255 {
		t.Errorf("exit status %d, want the gate's non-zero status", code)
	}
	if msg := oneLine(t, "kill message", stderr.String()); msg != "sshgate: session ended by an administrator" {
		t.Errorf("message %q", msg)
	}
	if !w.gate.LogContains("session killed") {
		t.Errorf("the gate did not log the end")
	}
}

// key remove ends the live sessions that logged in with that key, and only
// those; --keep-sessions leaves them, saying so.
func TestKeyRemoveEndsItsSessions(t *testing.T) {
	t.Parallel()
	w := newObsWorld(t)
	start := func(c *harness.Client) (*exec.Cmd, *harness.Buffer, chan struct{}) { return startLongSession(t, c) }
	second, _ := harness.Keygen(t, t.TempDir(), "id_second")
	w.gate.Admin(t, "key", "add", "alice", second+".pub")
	third, _ := harness.Keygen(t, t.TempDir(), "id_third")
	w.gate.Admin(t, "key", "add", "alice", third+".pub")
	fp := func(key string) string {
		out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", key+".pub").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(out))[1]
	}
	cmdA, stderrA, doneA := start(w.alice)
	_, _, doneB := start(w.alice.WithKey(second))
	_, _, doneC := start(w.alice.WithKey(third))
	if !harness.Eventually(short, func() bool { return len(liveSessions(t, w.gate)) == 3 }) {
		t.Fatal("the three sessions are not live")
	}
	if out := w.gate.Admin(t, "key", "remove", "alice", fp(third), "--keep-sessions"); !strings.Contains(out, "1 live sessions that logged in with it keep running (--keep-sessions)") {
		t.Fatalf("key remove --keep-sessions: %q", out)
	}
	out := w.gate.Admin(t, "key", "remove", "alice", fp(w.alice.Key))
	if out != "removed key "+fp(w.alice.Key)+" of alice\nended 1 live sessions that logged in with it\n" {
		t.Fatalf("key remove: %q", out)
	}
	select {
	case <-doneA:
	case <-time.After(short):
		t.Fatal("the session of the removed key did not end")
	}
	if code := cmdA.ProcessState.ExitCode(); code == 0 || code == 255 {
		t.Errorf("exit status %d, want the gate's non-zero status", code)
	}
	if msg := oneLine(t, "kill message", stderrA.String()); msg != "sshgate: session ended by an administrator" {
		t.Errorf("message %q", msg)
	}
	for name, done := range map[string]chan struct{}{"the second key's": doneB, "the kept": doneC} {
		select {
		case <-done:
			t.Errorf("%s session ended", name)
		default:
		}
	}
	if r := harness.Run(w.alice.SSHTo("web-1", nil, "true"), nil, short); r.Code != 255 {
		t.Errorf("the removed key still logs in: exit %d", r.Code)
	}
}

// The first-start banner says how to make a key and lists the six commands
// the README names; with log.format json, every line the gate writes is a
// JSON object (the banner becomes one record).
func TestFirstStartBanner(t *testing.T) {
	t.Parallel()
	g := harness.StartGate(t, harness.GateOptions{})
	if !g.Stderr.WaitFor("gate-key", short) {
		t.Fatalf("no banner:\n%s", g.Stderr.String())
	}
	text := g.Stderr.String()
	if !strings.Contains(text, "ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519") {
		t.Errorf("banner does not say how to make a key:\n%s", text)
	}
	if n := strings.Count(text, " --data "+g.DataDir+" "); n != 6 {
		t.Errorf("banner lists %d commands, the README says six:\n%s", n, text)
	}

	conf := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(conf, []byte("log:\n  format: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	j := harness.StartGate(t, harness.GateOptions{Args: []string{"--config", conf}})
	if !j.Stderr.WaitFor("no users yet", short) {
		t.Fatalf("no first-start record:\n%s", j.Stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(j.Stderr.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("not JSON in a JSON log: %q", line)
		}
	}
}

// Retention: with recordings.max_age/max_total and audit.file.max_age set,
// the gate removes old recordings and rotated audit files itself (at start
// and every minute), oldest first, and keeps recent ones.
func TestRetention(t *testing.T) {
	t.Parallel()
	g := harness.StartGate(t, harness.GateOptions{})
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	recs := filepath.Join(g.DataDir, "recordings")
	auditFile := filepath.Join(g.DataDir, "audit", "audit.jsonl")
	os.MkdirAll(recs, 0o700)
	now := time.Now()
	put := func(p string, size int, age time.Duration) {
		t.Helper()
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	put(filepath.Join(recs, "ancient.cast"), 1024, 40*24*time.Hour) // past max_age
	put(filepath.Join(recs, "older.cast"), 600<<10, 3*24*time.Hour) // pushed out by max_total
	put(filepath.Join(recs, "newer.cast"), 600<<10, 2*24*time.Hour) // kept
	put(filepath.Join(recs, "newest.cast"), 100<<10, 1*time.Hour)   // kept
	put(auditFile+".1", 100, 24*time.Hour)                          // kept
	put(auditFile+".2", 100, 100*24*time.Hour)                      // past audit.file.max_age
	cfg := writeConfig(t, "recordings:\n  max_age: 720h\n  max_total: 1MiB\naudit:\n  file:\n    max_age: 2160h\n")
	g2 := harness.StartGate(t, harness.GateOptions{DataDir: g.DataDir, Args: []string{"--config", cfg}})
	gone := []string{filepath.Join(recs, "ancient.cast"), filepath.Join(recs, "older.cast"), auditFile + ".2"}
	kept := []string{filepath.Join(recs, "newer.cast"), filepath.Join(recs, "newest.cast"), auditFile + ".1"}
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := 0
		for _, p := range gone {
			if _, err := os.Stat(p); err == nil {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d old files still there after 15s", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range kept {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("retention removed %s: %v", filepath.Base(p), err)
		}
	}
	if !g2.LogContains("recordings removed by retention") || !g2.LogContains("audit files removed by retention") {
		t.Errorf("retention left no log line")
	}
}
