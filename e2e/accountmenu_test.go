package e2e_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

var menuSpaces = regexp.MustCompile(` {2,}`)

// -update rewrites the golden screens in testdata/menu. The flag is shared
// with any other golden test of the package: defined here only if absent.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
}

func updateGoldens() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// menuWorld is newWorld plus what the account menu shows: env groups, a
// primary node with an alias, an unreachable upstream and a docker target
// (never started here). Ids are fixed by the order of creation:
// web-1=1, web-2=2, api-1=3, dead=4, box=5; alice's uid is 1.
func menuWorld(t *testing.T, gateArgs ...string) *world {
	t.Helper()
	return menuWorldWith(t, harness.GateOptions{Args: gateArgs})
}

func menuWorldWith(t *testing.T, opts harness.GateOptions) *world {
	t.Helper()
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen", "tmux")
	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	g := harness.StartGate(t, opts)
	sshd.Authorize(t, g.GateKey(t))
	up := func(name, env, addr string) {
		g.Admin(t, "target", "add", name, "--env", env, "--upstream", addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	}
	g.Admin(t, "env", "add", "prod", "--group", "shop")
	g.Admin(t, "env", "add", "staging", "--group", "shop")
	g.Admin(t, "env", "add", "dev", "--group", "lab")
	up("web-1", "prod", sshd.Addr)
	up("web-2", "staging", sshd.Addr)
	up("api-1", "prod", sshd.Addr)
	up("dead", "prod", "127.0.0.1:1")
	g.Admin(t, "target", "add", "box", "--env", "dev", "--docker", harness.TestImage)
	g.Admin(t, "target", "alias", "add", "web-1", "www")
	g.Admin(t, "target", "primary", "web-1")
	alice := g.AddUser(t, "alice")
	g.Admin(t, "grant", "alice", "--env", "prod", "--login", "root")
	g.Admin(t, "grant", "alice", "--target", "box")
	return &world{gate: g, sshd: sshd, alice: alice}
}

// tmuxSSH runs the real ssh -tt in a detached tmux pane of cols x rows: a
// real terminal emulator whose screen the test reads back.
type tmuxSSH struct {
	sock string
	norm *strings.Replacer
}

func startTmuxSSH(t *testing.T, w *world, login string, cols, rows int) *tmuxSSH {
	t.Helper()
	m := &tmuxSSH{sock: filepath.Join(t.TempDir(), "tmux"),
		norm: strings.NewReplacer(strconv.Itoa(w.gate.Port), "GATEPORT", w.sshd.Addr, "127.0.0.1:SSHDPORT")}
	startTmux(t, m, w, login, cols, rows)
	return m
}

// startTmux starts ssh -tt as login in m's tmux server.
func startTmux(t *testing.T, m *tmuxSSH, w *world, login string, cols, rows int) {
	t.Helper()
	cmd := w.alice.SSHTo("", []string{"-tt"})
	args := cmd.Args
	for i, a := range args {
		if a == w.alice.Dest("") {
			args[i] = login + "@" + w.alice.Host
		}
	}
	var line []string
	for _, a := range args {
		line = append(line, harness.ShellQuote(a))
	}
	m.tmux(t, "-f", "/dev/null", "new-session", "-d", "-x", strconv.Itoa(cols), "-y", strconv.Itoa(rows), "-s", "m",
		"env SSH_AUTH_SOCK= "+strings.Join(line, " ")+`; echo "ssh-exit-status=$?"`)
	m.tmux(t, "set-option", "-t", "m", "remain-on-exit", "on")
	t.Cleanup(func() { exec.Command("tmux", "-S", m.sock, "kill-server").Run() })
}

func (m *tmuxSSH) tmux(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", m.sock}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// screen is what the pane shows, ports normalised, trailing blanks cut.
func (m *tmuxSSH) screen(t *testing.T) string {
	t.Helper()
	lines := strings.Split(m.tmux(t, "capture-pane", "-p", "-t", "m"), "\n")
	for i, l := range lines {
		// Ports differ in length from run to run: columns are compared
		// up to the width of their padding.
		lines[i] = menuSpaces.ReplaceAllString(strings.TrimRight(m.norm.Replace(l), " "), "  ")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n") + "\n"
}

// waitScreen polls until the screen holds every want, and returns it.
func (m *tmuxSSH) waitScreen(t *testing.T, want ...string) string {
	t.Helper()
	var s string
	ok := harness.Eventually(short, func() bool {
		s = m.screen(t)
		for _, w := range want {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("screen never showed %q; it shows:\n%s", want, s)
	}
	return s
}

// waitLines polls until the screen's last line is row n (a redraw at a new
// size) and it holds every want.
func (m *tmuxSSH) waitLines(t *testing.T, n int, want ...string) string {
	t.Helper()
	var s string
	if !harness.Eventually(short, func() bool {
		s = m.waitScreen(t, want...)
		return strings.Count(s, "\n") == n && strings.HasSuffix(s, "q quit\n")
	}) {
		t.Fatalf("screen never redrawn to %d lines; it shows:\n%s", n, s)
	}
	return s
}

func (m *tmuxSSH) keys(t *testing.T, keys ...string) {
	t.Helper()
	m.tmux(t, append([]string{"send-keys", "-t", "m"}, keys...)...)
}

// exited waits for ssh to end and returns its exit status.
func (m *tmuxSSH) exited(t *testing.T) int {
	t.Helper()
	var code int
	if !harness.Eventually(short, func() bool {
		sub := menuExitRE.FindStringSubmatch(m.screen(t))
		if sub == nil {
			return false
		}
		code, _ = strconv.Atoi(sub[1])
		return true
	}) {
		t.Fatalf("ssh did not exit; screen:\n%s", m.screen(t))
	}
	return code
}

var menuExitRE = regexp.MustCompile(`ssh-exit-status=(\d+)`)

func menuGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "menu", name+".txt")
	if updateGoldens() {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run with -update)", name, err)
	}
	if string(want) != got {
		t.Errorf("screen %s differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

// The account menu, driven through a real terminal (tmux) by the real ssh
// client: groups -> envs -> containers, the direct strings, filter, numbers,
// Esc, resize, a session opened in place, back to the menu, q.
func TestAccountMenuTUI(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := menuWorld(t)
	m := startTmuxSSH(t, w, "alice", 80, 24)

	menuGolden(t, "1-groups", m.waitScreen(t, "GROUP", "shop"))
	m.keys(t, "Enter") // lab
	m.waitScreen(t, "ENVIRONMENT", "dev")
	m.keys(t, "Enter")
	menuGolden(t, "2-docker", m.waitScreen(t, "box", "starts on connect"))
	// Escape alone (a following byte would make it Alt+key, as in any terminal).
	m.keys(t, "Escape")
	m.waitScreen(t, "ENVIRONMENT", "dev")
	m.keys(t, "Escape")
	m.waitScreen(t, "GROUP")
	m.keys(t, "Down", "Up", "2")
	m.waitScreen(t, "number: 2")
	m.keys(t, "Enter")
	menuGolden(t, "2-envs", m.waitScreen(t, "ENVIRONMENT", "prod"))
	m.keys(t, "Enter")
	containers := m.waitScreen(t, "web-1", "stopped", "running", "lftp ", "Enter connect")
	menuGolden(t, "3-containers", containers)
	// Each direct string works as printed (printed_test.go).
	runPrintedMenuStrings(t, w, containers)
	// A number that is no row refuses; it never opens the highlighted one.
	m.keys(t, "9", "Enter")
	m.waitScreen(t, "there is no row 9; type a number from 1 to 3")
	if s := m.screen(t); strings.Contains(s, "Connecting to") {
		t.Fatalf("row 9 of 3 connected:\n%s", s)
	}
	m.keys(t, "Down")
	menuGolden(t, "4-second-row", m.waitScreen(t, "> 2  3"))
	m.keys(t, "w", "w")
	menuGolden(t, "5-filter", m.waitScreen(t, "filter: ww"))
	m.keys(t, "Escape")
	m.waitScreen(t, "\n\n\nUp/Down") // the status line is empty again
	m.keys(t, "3")
	m.waitScreen(t, "number: 3")
	// Resize: the menu redraws to the new size.
	m.tmux(t, "resize-window", "-t", "m", "-x", "100", "-y", "30")
	menuGolden(t, "6-resized", m.waitLines(t, 30, "number: 3"))
	m.tmux(t, "resize-window", "-t", "m", "-x", "80", "-y", "24")

	// Enter connects in place; keys typed at once reach the target's shell.
	m.keys(t, "BSpace", "1", "Enter")
	m.waitScreen(t, "Connecting to web-1 as root")
	// The session has the terminal's size: the one the menu had, or the
	// window-change that ssh sends some 200 ms after tmux's resize, which
	// may reach the gate only once the session has started (then the
	// gate passes it on). The shell may run the first stty before that.
	var s string
	for i := 0; ; i++ {
		mark := fmt.Sprintf("MARK-%d", 42+i)
		m.keys(t, "-l", fmt.Sprintf("stty size; echo MARK-$((%d+2))", 40+i))
		m.keys(t, "Enter")
		s = m.waitScreen(t, mark)
		if strings.Contains(s, "24 80\n"+mark) {
			break
		}
		if i == 20 {
			t.Fatalf("the session opened from the menu never got the 24x80 pty:\n%s", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.keys(t, "-l", "exit 3")
	m.keys(t, "Enter")
	// menu.after_session defaults to menu: back, on the same connection,
	// on a clean screen: nothing of the session shows above the menu.
	back := m.waitScreen(t, "ID", "NAME", "web-1", "Enter connect")
	if strings.Contains(back, "MARK-42") || strings.Contains(back, "Connecting to") {
		t.Errorf("the session's screen shows under the menu:\n%s", back)
	}
	m.keys(t, "q")
	if code := m.exited(t); code != 0 {
		t.Errorf("q: ssh exited %d, want 0", code)
	}
}

// With menu.after_session: disconnect, the session's end ends the
// connection with the target's exit status; with a default target, `ssh
// alice@gate` goes straight there and alice+gate reaches the menu.
func TestAccountMenuDisconnectAndDefaultTarget(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "sshgate.yaml")
	os.WriteFile(cfg, []byte("menu:\n  after_session: disconnect\n"), 0o600)
	w := menuWorld(t, "--config", cfg)

	m := startTmuxSSH(t, w, "alice", 80, 24)
	m.waitScreen(t, "GROUP")
	m.keys(t, "2", "Enter")
	m.waitScreen(t, "ENVIRONMENT")
	m.keys(t, "Enter")
	m.waitScreen(t, "web-1")
	m.keys(t, "Enter")
	m.waitScreen(t, "Connecting to web-1")
	m.keys(t, "-l", "exit 7")
	m.keys(t, "Enter")
	if code := m.exited(t); code != 7 {
		t.Errorf("after_session disconnect: ssh exited %d, want the target's 7", code)
	}

	w.gate.Admin(t, "user", "default-target", "alice", "api-1")
	r := harness.MustRun(t, w.alice.SSHTo("", nil, "echo on-$(hostname)-default"), nil, short)
	if !strings.Contains(r.Stdout, "-default") {
		t.Errorf("default target: %q", r.Stdout)
	}
	r = harness.MustRun(t, w.alice.SSHTo("gate", nil, "whoami"), nil, short)
	if !strings.Contains(r.Stdout, "user    alice") || !strings.Contains(r.Stdout, "default api-1") {
		t.Errorf("alice+gate whoami: %q", r.Stdout)
	}
	m2 := startTmuxSSH(t, w, "alice+gate", 80, 24)
	m2.waitScreen(t, "GROUP", "shop")
	m2.keys(t, "q")
	if code := m2.exited(t); code != 0 {
		t.Errorf("alice+gate menu q: exit %d", code)
	}
	// The default target no longer granted: the one-line refusal.
	w.gate.Admin(t, "user", "default-target", "alice", "web-2")
	res := harness.Run(w.alice.SSHTo("", nil, "true"), nil, short)
	if res.Code != 1 || oneLine(t, "stderr", res.Stderr) != `sshgate: target "web-2" not found or not permitted` {
		t.Errorf("ungranted default target: exit %d stderr %q", res.Code, res.Stderr)
	}
}

// The username grammar end to end: aliases, NODEID-UID, and the same
// refusal for unknown, ungranted and malformed targets.
func TestUsernameGrammar(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := menuWorld(t)
	ok := func(login string) {
		t.Helper()
		r := harness.MustRun(t, w.alice.SSH(login+"@"+w.alice.Host, "echo reached"), nil, short)
		if r.Stdout != "reached\n" {
			t.Errorf("%s: stdout %q", login, r.Stdout)
		}
	}
	ok("alice+www")      // alias of web-1
	ok("alice+www+root") // alias with a login
	ok("1-1")            // NODEID-UID: web-1, alice's uid 1
	ok("3-1")            // api-1
	refused := func(login, shown string) {
		t.Helper()
		r := harness.Run(w.alice.SSH(login+"@"+w.alice.Host, "true"), nil, short)
		if r.Code != 1 || oneLine(t, login, r.Stderr) != `sshgate: target "`+shown+`" not found or not permitted` {
			t.Errorf("%s: exit %d stderr %q", login, r.Code, r.Stderr)
		}
	}
	refused("2-1", "2-1")   // web-2: not granted
	refused("99-1", "99-1") // no such node
	refused("alice+nosuch", "nosuch")
	refused("alice+web-2", "web-2")
	// A uid that is not alice's, or not canonical, fails authentication
	// exactly like an unknown user.
	for _, login := range []string{"1-2", "1-01", "01-1", "1-1+root", "nobody"} {
		r := harness.Run(w.alice.SSH(login+"@"+w.alice.Host, "true"), nil, short)
		if r.Code != 255 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Errorf("%s: exit %d stderr %q, want an authentication failure", login, r.Code, r.Stderr)
		}
	}
}

// ls --json and config show exactly the grants; keys add/ls/rm manage the
// user's own keys with the key read from stdin.
func TestAccountCommands(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := menuWorld(t)
	r := harness.MustRun(t, w.alice.SSHTo("", nil, "ls", "--json"), nil, short)
	var got []struct {
		Name, Env, Kind, Group string
		ID                     int64
		Aliases                []string
		Primary                bool
		Platform               string `json:"platform_user"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
		t.Fatalf("ls --json: %v in %q", err, r.Stdout)
	}
	var names []string
	for _, v := range got {
		names = append(names, v.Name)
	}
	if strings.Join(names, " ") != "api-1 box dead web-1" {
		t.Fatalf("ls --json lists %v, want the granted api-1 box dead web-1", names)
	}
	if web := got[3]; web.ID != 1 || web.Platform != "1-1" || !web.Primary || strings.Join(web.Aliases, ",") != "www" || web.Group != "shop" {
		t.Errorf("ls --json web-1: %+v", web)
	}
	r = harness.MustRun(t, w.alice.SSHTo("", nil, "config"), nil, short)
	if strings.Contains(r.Stdout, "web-2") || strings.Count(r.Stdout, "Host ") != 4 {
		t.Errorf("config does not match the grants:\n%s", r.Stdout)
	}

	// keys: add from stdin, list, refuse a weak or private key, remove.
	dir := t.TempDir()
	priv, pubLine := harness.Keygen(t, dir, "id_new")
	r = harness.MustRun(t, w.alice.SSHTo("", nil, "keys", "add"), []byte(pubLine+"\n"), short)
	if !strings.HasPrefix(r.Stdout, "added key SHA256:") {
		t.Fatalf("keys add: %q", r.Stdout)
	}
	fp := strings.Fields(r.Stdout)[2]
	r = harness.MustRun(t, w.alice.SSHTo("", nil, "keys", "ls"), nil, short)
	if !strings.Contains(r.Stdout, fp) || !strings.Contains(r.Stdout, "(this session)") || strings.Count(r.Stdout, "\n") != 2 {
		t.Errorf("keys ls: %q", r.Stdout)
	}
	newClient := w.alice.WithKey(priv)
	harness.MustRun(t, newClient.SSHTo("gate", nil, "whoami"), nil, short)
	for _, bad := range []string{"ssh-dss AAAAB3NzaC1kc3MAAACBAP== x\n", "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n", "hello\n"} {
		res := harness.Run(w.alice.SSHTo("", nil, "keys", "add"), []byte(bad), short)
		if res.Code != 2 || res.Stdout != "" {
			t.Errorf("keys add %q: exit %d stdout %q stderr %q", bad, res.Code, res.Stdout, res.Stderr)
		}
		oneLine(t, "keys add "+bad, res.Stderr)
	}
	harness.MustRun(t, w.alice.SSHTo("", nil, "keys", "rm", fp), nil, short)
	if res := harness.Run(newClient.SSHTo("gate", nil, "whoami"), nil, short); res.Code != 255 {
		t.Errorf("a removed key still logs in: exit %d", res.Code)
	}
	res := harness.Run(w.alice.SSHTo("", nil, "keys", "rm", fp), nil, short)
	if res.Code != 1 || !strings.Contains(res.Stderr, "is not one of your keys") {
		t.Errorf("keys rm twice: exit %d stderr %q", res.Code, res.Stderr)
	}
	for _, bad := range [][]string{{"keys"}, {"keys", "frob"}, {"whoami", "x"}, {"ls", "-l"}} {
		res := harness.Run(w.alice.SSHTo("", nil, bad...), nil, short)
		if res.Code != 2 || res.Stdout != "" {
			t.Errorf("%v: exit %d stdout %q", bad, res.Code, res.Stdout)
		}
	}
}

// A client that vanishes mid-menu, or mid-session opened from the menu,
// leaves no goroutine behind (the key pump, the request router, bubbletea).
func TestAccountMenuNoLeakOnDisconnect(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pprofAddr := ln.Addr().String()
	ln.Close()
	w := menuWorldWith(t, harness.GateOptions{Env: []string{"SSHGATE_PPROF=" + pprofAddr}})
	goroutines := func() (int, string) {
		resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			return -1, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var n int
		fmt.Sscanf(string(b), "goroutine profile: total %d", &n)
		return n, string(b)
	}
	// A first menu warms up what stays (the store's pool and the like).
	harness.MustRun(t, w.alice.SSHTo("", nil, "ls"), nil, short)
	base, _ := goroutines()
	if base <= 0 {
		t.Fatal("no goroutine count from pprof")
	}
	for _, mid := range []string{"menu", "session"} {
		m := startTmuxSSH(t, w, "alice", 80, 24)
		m.waitScreen(t, "GROUP")
		if mid == "session" {
			m.keys(t, "2", "Enter")
			m.waitScreen(t, "ENVIRONMENT")
			m.keys(t, "Enter")
			m.waitScreen(t, "Enter connect")
			m.keys(t, "Enter")
			m.waitScreen(t, "Connecting to web-1")
		}
		m.tmux(t, "kill-server") // ssh gets SIGHUP and dies: the TCP connection drops
		var n int
		var dump string
		if !harness.Eventually(short, func() bool {
			n, dump = goroutines()
			return n >= 0 && n <= base && !strings.Contains(dump, "broker.(*keyPump)") && !strings.Contains(dump, "bubbletea")
		}) {
			t.Errorf("after a disconnect mid-%s: %d goroutines, baseline %d:\n%s", mid, n, base, dump)
		}
	}
}

// A docker target chosen in the menu starts on connect, runs the session in
// place, and is removed when the session ends, while the menu comes back.
func TestAccountMenuDocker(t *testing.T) {
	harness.RequireTools(t, "ssh", "tmux")
	w := newDockerWorld(t)
	box := w.target(t, "box", "--docker", harness.TestImage)
	dw := &world{gate: w.gate, alice: w.alice}
	m := &tmuxSSH{sock: filepath.Join(t.TempDir(), "tmux"), norm: strings.NewReplacer(strconv.Itoa(w.gate.Port), "GATEPORT")}
	startTmux(t, m, dw, "alice", 80, 24)
	m.waitScreen(t, box, "docker", "starts on connect")
	m.keys(t, "Enter")
	m.waitScreen(t, "Connecting to "+box)
	m.keys(t, "-l", "echo MARK-$((1+1)); tty")
	m.keys(t, "Enter")
	m.waitScreen(t, "MARK-2", "/dev/pts/")
	m.keys(t, "-l", "exit 5")
	m.keys(t, "Enter")
	m.waitScreen(t, box, "Enter connect")
	waitNoContainers(t, box, short)
	m.keys(t, "q")
	if code := m.exited(t); code != 0 {
		t.Errorf("q: ssh exited %d", code)
	}
}
