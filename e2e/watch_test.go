package e2e_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// startTmuxCmd runs args (ssh, or the admin CLI) in a detached tmux pane of
// cols x rows: a real terminal whose screen the test reads back.
func startTmuxCmd(t *testing.T, args []string, cols, rows int) *tmuxSSH {
	t.Helper()
	m := &tmuxSSH{sock: filepath.Join(t.TempDir(), "tmux"), norm: strings.NewReplacer()}
	var line []string
	for _, a := range args {
		line = append(line, harness.ShellQuote(a))
	}
	m.tmux(t, "-f", "/dev/null", "new-session", "-d", "-x", strconv.Itoa(cols), "-y", strconv.Itoa(rows), "-s", "m",
		"env SSH_AUTH_SOCK= "+strings.Join(line, " ")+`; echo "ssh-exit-status=$?"`)
	m.tmux(t, "set-option", "-t", "m", "remain-on-exit", "on")
	t.Cleanup(func() { exec.Command("tmux", "-S", m.sock, "kill-server").Run() })
	return m
}

// liveSessionOf waits until user has a live session and returns its id.
func liveSessionOf(t *testing.T, g *harness.Gate, user string) string {
	t.Helper()
	var id string
	if !harness.Eventually(short, func() bool {
		var ls []struct{ ID, User string }
		if err := json.Unmarshal([]byte(g.Admin(t, "sessions", "--json")), &ls); err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if l.User == user {
				id = l.ID
			}
		}
		return id != ""
	}) {
		t.Fatalf("no live session of %s", user)
	}
	return id
}

// Watching a live session with two real terminals: alice works in a PTY
// session; bob, whose grant for the target has --watch, watches it with
// `ssh -t bob@gate watch ID` and reads what alice typed, starting with what
// was on her screen before; alice reads that bob watches, and when he
// leaves; bob's keys never reach her shell. Without --watch (and for an
// unknown id) the same one line and exit status 1. The admin CLI watches
// too, until the session ends. Every watch is audited.
func TestWatchSession(t *testing.T) {
	gateOnly(t)
	harness.RequireTools(t, "tmux")
	w := newWorld(t, worldOptions{})
	g := w.gate
	bob := g.AddUser(t, "bob")
	g.Admin(t, "grant", "bob", "--target", "web-1", "--login", "root") // no --watch yet

	alice := startTmuxCmd(t, w.alice.SSHTo("web-1", []string{"-tt"}).Args, 100, 30)
	alice.keys(t, "-l", "echo before-$((40+2))")
	alice.keys(t, "Enter")
	alice.waitScreen(t, "before-42")
	id := liveSessionOf(t, g, "alice")

	// Not allowed, unknown, malformed: one line, exit 1, nothing told to alice.
	refusal := func(c *harness.Client, id string) harness.Result {
		t.Helper()
		r := harness.Run(c.SSHTo("", nil, "watch", id), nil, short)
		if r.Code != 1 || r.Stdout != "" || strings.Count(r.Stderr, "\n") != 1 {
			t.Fatalf("watch %s as %s: exit %d, stdout %q, stderr %q; want one line and exit 1", id, c.User, r.Code, r.Stdout, r.Stderr)
		}
		return r
	}
	denied := refusal(bob, id)
	unknown := refusal(bob, "0123456789abcdef")
	if want := "sshgate: session " + id + " not found or you may not watch it\n"; denied.Stderr != want {
		t.Errorf("refusal %q, want %q", denied.Stderr, want)
	}
	if strings.ReplaceAll(unknown.Stderr, "0123456789abcdef", id) != denied.Stderr {
		t.Errorf("an unknown id (%q) and a not-permitted one (%q) are told apart", unknown.Stderr, denied.Stderr)
	}
	refusal(bob, "nope")

	// An env grant with --watch covers web-1 (in prod).
	g.Admin(t, "grant", "bob", "--env", "prod", "--watch")
	watcher := startTmuxCmd(t, bob.SSHTo("", []string{"-tt"}, "watch", id).Args, 100, 30)
	watcher.waitScreen(t, "sshgate: watching session "+id+" (alice on web-1 as root, 100x30), read only", "before-42")
	alice.waitScreen(t, "sshgate: bob is watching this session")

	alice.keys(t, "-l", "echo typed-$((6*7))")
	alice.keys(t, "Enter")
	alice.waitScreen(t, "typed-42")
	watcher.waitScreen(t, "echo typed-$((6*7))", "typed-42")

	// Bob's keys go nowhere; q leaves (exit 0) and alice is told.
	watcher.keys(t, "-l", "echo bob-$((1+1))")
	watcher.keys(t, "Enter")
	alice.keys(t, "-l", "echo after-$((5*5))")
	alice.keys(t, "Enter")
	alice.waitScreen(t, "after-25")
	watcher.waitScreen(t, "after-25")
	if s := alice.screen(t); strings.Contains(s, "bob-") {
		t.Fatalf("the watcher's keys reached the session:\n%s", s)
	}
	watcher.keys(t, "q")
	if code := watcher.exited(t); code != 0 {
		t.Errorf("q: watcher's ssh exited %d, want 0:\n%s", code, watcher.screen(t))
	}
	alice.waitScreen(t, "sshgate: bob stopped watching this session")

	// The admin CLI, on the gate's host, over DATA/watch.sock.
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	admin := startTmuxCmd(t, []string{g.Bin, "sessions", "watch", id, "--data", g.DataDir}, 100, 30)
	admin.waitScreen(t, "sshgate: watching session "+id, "after-25")
	alice.waitScreen(t, "sshgate: admin "+me.Username+" is watching this session")
	// And bob without a PTY (stdin at EOF): the output on stdout until the
	// session ends.
	var plain bytes.Buffer
	plainCmd := bob.SSHTo("", nil, "watch", id)
	plainCmd.Stdout = &plain
	plainErr := &bytes.Buffer{}
	plainCmd.Stderr = plainErr
	if err := plainCmd.Start(); err != nil {
		t.Fatal(err)
	}
	alice.waitScreen(t, "sshgate: bob is watching this session", "sshgate: admin "+me.Username+" is watching")
	if !harness.Eventually(short, func() bool { return strings.Count(alice.screen(t), "bob is watching this session") == 2 }) {
		t.Fatalf("alice was not told of bob's second watch:\n%s", alice.screen(t))
	}
	alice.keys(t, "-l", "echo admin-sees-$((9*9))")
	alice.keys(t, "Enter")
	admin.waitScreen(t, "admin-sees-81")
	alice.keys(t, "-l", "exit")
	alice.keys(t, "Enter")
	admin.waitScreen(t, "sshgate: the watched session ended")
	if err := plainCmd.Wait(); err != nil {
		t.Errorf("bob's watch without a PTY: %v (stderr %q)", err, plainErr)
	}
	if !strings.Contains(plain.String(), "admin-sees-81") || !strings.HasSuffix(plainErr.String(), "sshgate: the watched session ended\n") {
		t.Errorf("bob's watch without a PTY: stdout %q, stderr %q", plain.String(), plainErr.String())
	}
	if code := admin.exited(t); code != 0 {
		t.Errorf("admin watch exited %d at the session's end, want 0:\n%s", code, admin.screen(t))
	}
	if code := alice.exited(t); code != 0 {
		t.Errorf("alice's ssh exited %d, want 0", code)
	}

	// Audit: both watches, start and end, naming the watcher, the session
	// and the target; the refusals started none.
	log := &auditLog{path: filepath.Join(g.DataDir, "audit", "audit.jsonl")}
	var watches []map[string]any
	if !harness.Eventually(short, func() bool {
		evs, _ := log.read(t)
		watches = nil
		for _, e := range evs {
			if typ, _ := e["type"].(string); strings.HasPrefix(typ, "watch.") {
				watches = append(watches, e)
			}
		}
		return len(watches) >= 6
	}) {
		t.Fatalf("audit has %d watch events, want 6: %v", len(watches), watches)
	}
	// The two watches that end with the session end in either order.
	if len(watches) == 6 && watches[4]["user"] == "bob" {
		watches[4], watches[5] = watches[5], watches[4]
	}
	adm := "admin " + me.Username
	want := []struct{ typ, user, reason string }{
		{"watch.start", "bob", ""}, {"watch.end", "bob", "left"},
		{"watch.start", adm, ""}, {"watch.start", "bob", ""},
		{"watch.end", adm, "session_ended"}, {"watch.end", "bob", "session_ended"},
	}
	for i, wnt := range want {
		e := watches[i]
		if e["type"] != wnt.typ || e["user"] != wnt.user || e["session_id"] != id || e["target"] != "web-1" ||
			e["watched_user"] != "alice" || e["login"] != "root" || (wnt.reason != "" && e["reason"] != wnt.reason) {
			t.Errorf("watch event %d: %v, want %+v", i, e, wnt)
		}
	}
	if len(watches) != 6 {
		t.Errorf("%d watch events, want 6: %v", len(watches), watches)
	}
}

// Two gates on one PostgreSQL: alice's PTY session is on gate A; asked on
// gate B, bob (allowed) is told which gate holds it, carol (not allowed)
// gets the one refusal, and the admin CLI on B's host says where it is.
func TestWatchOtherGate(t *testing.T) {
	gateOnly(t)
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	dsn, pwFile := pgtestConfig(t)
	cfg := filepath.Join(t.TempDir(), "sshgate.yaml")
	yaml := "store:\n  driver: postgres\n  dsn: '" + dsn + "'\n"
	if pwFile != "" {
		yaml += "  password_file: '" + pwFile + "'\n"
	}
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"SSHGATE_CONFIG=" + cfg}
	a := harness.StartGate(t, harness.GateOptions{Env: env})
	b := harness.StartGate(t, harness.GateOptions{Env: env, DataDir: filepath.Join(t.TempDir(), "data-b")})
	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	sshd.Authorize(t, a.GateKey(t))
	a.Admin(t, "env", "add", "prod")
	a.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := a.AddUser(t, "alice")
	a.Admin(t, "grant", "alice", "--target", "web-1", "--login", "root")
	bob := a.AddUser(t, "bob")
	a.Admin(t, "grant", "bob", "--target", "web-1", "--watch")
	carol := a.AddUser(t, "carol")
	a.Admin(t, "grant", "carol", "--target", "web-1")

	sess := alice.SSHTo("web-1", []string{"-tt"}, "sleep", "120")
	sess.Stdin = strings.NewReader("")
	if err := sess.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Process.Kill(); sess.Wait() })
	id := liveSessionOf(t, a, "alice")
	var ls []struct{ ID, Gate string }
	json.Unmarshal([]byte(a.Admin(t, "sessions", "--json")), &ls)
	gateA := ls[0].Gate

	onB := func(c *harness.Client) harness.Result {
		return harness.Run(b.Client(c.User, c.Key).SSHTo("", nil, "watch", id), nil, short)
	}
	r := onB(bob)
	want := "sshgate: session " + id + " is on gate " + gateA + " (" + a.Addr + "), which this gate cannot reach; connect to that gate to watch it\n"
	if r.Code != 1 || r.Stderr != want {
		t.Errorf("bob on gate B: exit %d stderr %q, want 1 and %q", r.Code, r.Stderr, want)
	}
	if r := onB(carol); r.Code != 1 || r.Stderr != "sshgate: session "+id+" not found or you may not watch it\n" {
		t.Errorf("carol on gate B: exit %d stderr %q", r.Code, r.Stderr)
	}
	so, se, code := b.AdminResult("sessions", "watch", id)
	if code != 1 || so != "" || !strings.Contains(se, "the store lists it on gate "+gateA+" ("+a.Addr+")") {
		t.Errorf("admin watch on B's host: exit %d stdout %q stderr %q", code, so, se)
	}
	if _, se, code := b.AdminResult("sessions", "watch", "0123456789abcdef"); code != 1 || !strings.Contains(se, "session 0123456789abcdef not found") {
		t.Errorf("admin watch of an unknown id: exit %d stderr %q", code, se)
	}
	if _, se, code := b.AdminResult("sessions", "watch", "nope"); code != 2 || !strings.Contains(se, `"nope" is not a session id`) {
		t.Errorf("admin watch of a malformed id: exit %d stderr %q", code, se)
	}
}

// ptyFlood runs a PTY session of alice's that writes size bytes once
// started() returns and "go" is sent, and returns how long the output took
// to arrive whole, with her stderr.
func ptyFlood(t *testing.T, w *world, size int, started func()) (time.Duration, *harness.Buffer) {
	t.Helper()
	sess := w.alice.SSHTo("web-1", []string{"-tt"}, "read go; head -c "+strconv.Itoa(size)+" /dev/zero | tr '\\0' x; echo; echo DONE-MARK")
	in, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	aliceErr := &harness.Buffer{}
	sess.Stderr = aliceErr
	if err := sess.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Process.Kill(); sess.Wait() })
	started()
	start := time.Now()
	io.WriteString(in, "go\n")
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(out, int64(size)+1<<20))
		got <- string(b)
	}()
	var aliceOut string
	select {
	case aliceOut = <-got:
	case <-time.After(long):
		t.Fatalf("alice's output did not arrive; her stderr %q", aliceErr.String())
	}
	took := time.Since(start)
	if n := strings.Count(aliceOut, "x"); n != size || !strings.Contains(aliceOut, "DONE-MARK") {
		t.Fatalf("alice got %d x's (want %d), DONE-MARK %v", n, size, strings.Contains(aliceOut, "DONE-MARK"))
	}
	in.Close()
	return took, aliceErr
}

// A watcher that stops reading never slows the session: alice's 32 MiB of
// PTY output all arrive while bob's ssh reads nothing (timed against the
// same output unwatched); bob is dropped with one line and exit status 1
// once his queue is full, alice reads that he stopped watching, and the end
// is audited as too_slow.
func TestWatchSlowWatcherDropped(t *testing.T) {
	gateOnly(t)
	w := newWorld(t, worldOptions{})
	g := w.gate
	bob := g.AddUser(t, "bob")
	g.Admin(t, "grant", "bob", "--target", "web-1", "--watch")
	const size = 32 << 20

	unwatched, _ := ptyFlood(t, w, size, func() { liveSessionOf(t, g, "alice") })
	if !harness.Eventually(short, func() bool { return strings.TrimSpace(g.Admin(t, "sessions", "--json")) == "[]" }) {
		t.Fatal("the first session did not end")
	}
	var watcher *exec.Cmd
	var wout io.Reader
	var bobErr harness.Buffer
	watched, aliceErr := ptyFlood(t, w, size, func() {
		id := liveSessionOf(t, g, "alice")
		watcher = bob.SSHTo("", []string{"-tt"}, "watch", id)
		watcher.Stdin = strings.NewReader("")
		var err error
		if wout, err = watcher.StdoutPipe(); err != nil { // not read until alice is done
			t.Fatal(err)
		}
		watcher.Stderr = &bobErr
		if err := watcher.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { watcher.Process.Kill(); watcher.Wait() })
		if !harness.Eventually(short, func() bool { return strings.Contains(bobErr.String(), "sshgate: watching session") }) {
			t.Fatalf("the watch did not start: %q", bobErr.String())
		}
	})
	t.Logf("alice's %d MiB of PTY output: %s unwatched, %s with a watcher that reads nothing",
		size>>20, unwatched.Round(time.Millisecond), watched.Round(time.Millisecond))
	if !strings.Contains(aliceErr.String(), "bob is watching this session") {
		t.Errorf("alice was not told of the watch; stderr %q", aliceErr.String())
	}
	if !harness.Eventually(short, func() bool { return strings.Contains(aliceErr.String(), "bob stopped watching this session") }) {
		t.Errorf("alice was not told the watch ended; stderr %q", aliceErr.String())
	}
	// Bob reads what had reached him, then the line, and ssh exits 1.
	io.Copy(io.Discard, wout)
	err := watcher.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(bobErr.String(), "sshgate: watch ended: this terminal did not keep up with the session's output") {
		t.Errorf("dropped watcher: %v, stderr %q", err, bobErr.String())
	}
	log := &auditLog{path: filepath.Join(g.DataDir, "audit", "audit.jsonl")}
	if !harness.Eventually(short, func() bool {
		evs, _ := log.read(t)
		for _, e := range evs {
			if e["type"] == "watch.end" && e["user"] == "bob" && e["reason"] == "too_slow" {
				return true
			}
		}
		return false
	}) {
		t.Errorf("no watch.end with reason too_slow in the audit")
	}
}
