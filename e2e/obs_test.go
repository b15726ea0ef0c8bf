package e2e_test

// Issue 7 part B: recordings and replay, metrics and health, live sessions.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/audit/recording"
)

// newObsWorld is newWorld with extra `serve` arguments.
func newObsWorld(t *testing.T, args ...string) *world {
	t.Helper()
	gateOnly(t)
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	g := harness.StartGate(t, harness.GateOptions{Args: args})
	sshd.Authorize(t, g.GateKey(t))
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := g.AddUser(t, "alice")
	g.Admin(t, "grant", "alice", "--target", "web-1", "--login", "root")
	return &world{gate: g, sshd: sshd, alice: alice}
}

type liveView struct {
	ID       string `json:"id"`
	User     string `json:"user"`
	Target   string `json:"target"`
	Login    string `json:"login"`
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
}

func liveSessions(t *testing.T, g *harness.Gate) []liveView {
	t.Helper()
	out := g.Admin(t, "sessions", "--json")
	var ls []liveView
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		t.Fatalf("sessions --json: %v: %q", err, out)
	}
	return ls
}

// waitNoSessions waits until the gate has unregistered every session (and
// so closed their recordings).
func waitNoSessions(t *testing.T, g *harness.Gate) {
	t.Helper()
	if !harness.Eventually(short, func() bool { return len(liveSessions(t, g)) == 0 }) {
		t.Fatalf("sessions still listed: %+v", liveSessions(t, g))
	}
}

// A PTY session through the real ssh -tt is recorded in asciicast v2 and
// checked frame by frame; replay reproduces it with harmful sequences
// escaped.
func TestRecordingAndReplay(t *testing.T) {
	t.Parallel()
	w := newObsWorld(t)

	cmd := w.alice.SSHTo("web-1", []string{"-tt"})
	cmd.Env = append(cmd.Env, "TERM=xterm-256color")
	s := startPTY(t, cmd, 24, 80)
	s.do(t, "echo HELLO-$((6*7))")
	// 20000 three-byte characters: the relay's reads split some of them.
	s.do(t, `i=0; while [ $i -lt 4000 ]; do printf '€€€€€'; i=$((i+1)); done; echo`)
	// An OSC 52 clipboard write and a device status query.
	s.do(t, `printf 'X\033]52;c;cHduZWQ=\007Y\033[6nZ\n'`)
	if !s.resize(t, 40, 100) {
		t.Fatal("window change did not reach the remote pty")
	}
	fmt.Fprintf(s.ptmx, "exit 3\r")
	select {
	case <-s.done:
	case <-time.After(short):
		t.Fatal("ssh did not exit")
	}
	waitNoSessions(t, w.gate)

	files, _ := filepath.Glob(filepath.Join(w.gate.DataDir, "recordings", "*.cast"))
	if len(files) != 1 {
		t.Fatalf("recordings: %v, want one file", files)
	}
	if !regexp.MustCompile(`/[0-9a-f]{16}\.cast$`).MatchString(files[0]) {
		t.Errorf("recording name %s is not SESSION_ID.cast", files[0])
	}
	if st, err := os.Stat(files[0]); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("recording mode: %v %v", st.Mode(), err)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	h, evs, err := recording.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatalf("parse recording: %v", err)
	}
	if h.Version != 2 || h.Width != 80 || h.Height != 24 || h.Env["TERM"] != "xterm-256color" || h.Timestamp == 0 {
		t.Errorf("header %+v, want version 2, 80x24, TERM xterm-256color", h)
	}
	var out strings.Builder
	resized, resizedAt, sizeShownAt, last := false, -1, -1, -1.0
	for i, e := range evs {
		if e.Time < last {
			t.Errorf("event %d goes back in time", i)
		}
		last = e.Time
		switch e.Type {
		case "o":
			out.WriteString(e.Data)
			if strings.Contains(e.Data, "\uFFFD") {
				t.Errorf("event %d holds U+FFFD: a character was split: %q", i, e.Data)
			}
			if sizeShownAt < 0 && strings.Contains(out.String(), "40 100") {
				sizeShownAt = i
			}
		case "r":
			if e.Data == "100x40" && !resized {
				resized, resizedAt = true, i
			}
		case "i":
			t.Errorf("input recorded by default: %q", e.Data)
		default:
			t.Errorf("event %d of type %q", i, e.Type)
		}
	}
	text := out.String()
	for _, want := range []string{"HELLO-42", strings.Repeat("€", 20000), "\x1b]52;c;cHduZWQ=\x07"} {
		if !strings.Contains(text, want) {
			t.Errorf("recorded output lacks %.40q", want)
		}
	}
	if !resized || resizedAt > sizeShownAt {
		t.Errorf("resize event: present %v at %d, stty showed 40 100 at %d", resized, resizedAt, sizeShownAt)
	}

	// Replay at high speed reproduces the output, escaped where harmful.
	so, se, code := w.gate.AdminResult("replay", files[0], "--speed", "1000", "--max-idle", "10ms")
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, se)
	}
	for _, want := range []string{"HELLO-42", strings.Repeat("€", 20000), "X^[]52;c;cHduZWQ=^GY^[[6nZ"} {
		if !strings.Contains(so, want) {
			t.Errorf("replay output lacks %.40q", want)
		}
	}
	for _, bad := range []string{"\x1b]", "\x1b[6n"} {
		if strings.Contains(so, bad) {
			t.Errorf("replay output holds %q raw", bad)
		}
	}

	// asciinema itself plays it (it wants a terminal: script gives it one).
	if _, err := exec.LookPath("asciinema"); err == nil {
		out, err := exec.Command("script", "-qec", "asciinema play -i 0.01 -s 1000 "+files[0], "/dev/null").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "HELLO-42") {
			t.Errorf("asciinema play: %v\n%.300q", err, out)
		}
	}

	// A malformed recording: a message naming the file and line, exit 2.
	badFile := filepath.Join(t.TempDir(), "bad.cast")
	os.WriteFile(badFile, []byte(`{"version": 2, "width": 80, "height": 24}`+"\n"+`[0.1, "o", "a"]`+"\n"+`[0.2, "o"`+"\n"), 0o600)
	so, se, code = w.gate.AdminResult("replay", badFile)
	if code != 2 || so != "" || !strings.Contains(se, badFile) || !strings.Contains(se, "line 3") {
		t.Errorf("replay of a malformed file: exit %d, stdout %q, stderr %q", code, so, se)
	}
	if _, se, code := w.gate.AdminResult("replay", files[0], "--speed", "0"); code != 2 || !strings.Contains(se, "--speed") {
		t.Errorf("replay --speed 0: exit %d, %q", code, se)
	}

	// Non-PTY sessions (here an exec; the same for transfers) are not recorded.
	r := harness.MustRun(t, w.alice.SSHTo("web-1", nil, "echo plain"), nil, short)
	if !strings.Contains(r.Stdout, "plain") {
		t.Fatalf("exec: %q", r.Stdout)
	}
	waitNoSessions(t, w.gate)
	if files, _ := filepath.Glob(filepath.Join(w.gate.DataDir, "recordings", "*.cast")); len(files) != 1 {
		t.Errorf("recordings after an exec session: %v", files)
	}
}

// A recordings directory that cannot be made follows recordings.on_error:
// fail-closed refuses PTY sessions with one line, fail-open lets them run. A
// target that is fail-closed for audit events (audit.failure_by_target) is
// fail-closed for its recordings too.
func TestRecordingFailurePolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	blocker := filepath.Join(dir, "not-a-dir")
	os.WriteFile(blocker, []byte("x"), 0o600)
	for _, tc := range []struct{ name, mode, extra string }{
		{"fail-closed", "fail-closed", ""},
		{"fail-open", "fail-open", ""},
		{"target-fail-closed-by-audit", "fail-open", "audit:\n  failure_by_target:\n    web-1: fail-closed\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, tc.name+".yaml")
			os.WriteFile(cfg, []byte("recordings:\n  dir: "+blocker+"/rec\n  on_error: "+tc.mode+"\n"+tc.extra), 0o600)
			w := newObsWorld(t, "--config", cfg)
			cmd := w.alice.SSHTo("web-1", []string{"-tt"}, "echo RAN")
			r := harness.Run(cmd, nil, short)
			if tc.mode == "fail-closed" || tc.extra != "" {
				msg := oneLine(t, "refusal", clientNoise(r.Stderr))
				if r.Code != 1 || strings.Contains(r.Stdout, "RAN") || !strings.Contains(msg, "must be recorded") || !strings.Contains(msg, "(ref ") {
					t.Errorf("fail-closed: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
				}
				noGoError(t, "refusal", msg)
				// Non-PTY sessions are not recorded, so they run.
				if r := harness.Run(w.alice.SSHTo("web-1", nil, "echo RAN"), nil, short); r.Code != 0 || !strings.Contains(r.Stdout, "RAN") {
					t.Errorf("exec under fail-closed: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
				}
			} else if r.Code != 0 || !strings.Contains(r.Stdout, "RAN") {
				t.Errorf("fail-open: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
			}
		})
	}
}

// sshgate sessions lists a live session; sessions kill ends it, and the
// real client sees one line and a non-zero exit status.
func TestSessionsListAndKill(t *testing.T) {
	t.Parallel()
	w := newObsWorld(t)
	cmd := w.alice.SSHTo("web-1", nil, "echo started; exec sleep 300")
	var stdout, stderr harness.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	if !stdout.WaitFor("started", short) {
		t.Fatalf("session did not start: %q", stderr.String())
	}
	var ls []liveView
	// Byte counts are written every few seconds.
	if !harness.Eventually(short, func() bool { ls = liveSessions(t, w.gate); return len(ls) == 1 && ls[0].BytesOut >= 8 }) {
		t.Fatalf("sessions: %+v, want alice's session with its bytes", ls)
	}
	l := ls[0]
	if l.User != "alice" || l.Target != "web-1" || l.Login != "root" || len(l.ID) != 16 {
		t.Errorf("session %+v", l)
	}
	table := w.gate.Admin(t, "sessions")
	if !regexp.MustCompile(`(?m)^ID\s+USER\s+TARGET\s+LOGIN\s+SINCE\s+BYTES_IN\s+BYTES_OUT\n` + l.ID + `\s+alice\s+web-1\s+root\s+\S+Z\s+\d+\s+` + strconv.FormatInt(l.BytesOut, 10) + `\s*$`).MatchString(table) {
		t.Errorf("sessions table:\n%s", table)
	}

	if _, se, code := w.gate.AdminResult("sessions", "kill", "0123456789abcdef"); code != 1 || !strings.Contains(se, "not found") {
		t.Errorf("kill unknown: exit %d, %q", code, se)
	}
	if _, se, code := w.gate.AdminResult("sessions", "kill", "../etc"); code != 2 || !strings.Contains(se, "../etc") {
		t.Errorf("kill bad id: exit %d, %q", code, se)
	}
	so := w.gate.Admin(t, "sessions", "kill", l.ID)
	if !strings.Contains(so, l.ID) {
		t.Errorf("kill: %q", so)
	}
	select {
	case <-done:
	case <-time.After(short):
		t.Fatal("the killed session's client did not exit")
	}
	if code := cmd.ProcessState.ExitCode(); code == 0 || code == 255 {
		t.Errorf("killed client exit status %d, want the gate's non-zero status", code)
	}
	msg := oneLine(t, "kill message", stderr.String())
	if msg != "sshgate: session ended by an administrator" {
		t.Errorf("kill message %q", msg)
	}
	waitNoSessions(t, w.gate)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue finds one sample line's value in a scrape.
func metricValue(scrape, series string) (float64, bool) {
	v, ok := harness.ParseMetrics(scrape)[series]
	return v, ok
}

// The metrics listener of a gate that served a session passes promtool;
// /healthz answers; /readyz flips to 503 when the gate drains.
func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "promtool")
	addr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	w := newObsWorld(t, "--metrics-listen", addr)
	base := "http://" + addr

	if code, body := httpGet(t, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	r := harness.MustRun(t, w.alice.SSHTo("web-1", nil, "echo served"), nil, short)
	if !strings.Contains(r.Stdout, "served") {
		t.Fatalf("exec: %q", r.Stdout)
	}
	// A failed login too.
	other, _ := harness.Keygen(t, t.TempDir(), "id_other")
	harness.Run(w.alice.WithKey(other).SSHTo("web-1", nil, "true"), nil, short)

	var scrape string
	if !harness.Eventually(short, func() bool {
		_, scrape = httpGet(t, base+"/metrics")
		v, ok := metricValue(scrape, "sshgate_broker_sessions_active")
		return ok && v == 0 && strings.Contains(scrape, "sshgate_broker_sessions_total 1")
	}) {
		t.Fatalf("sessions not counted:\n%s", scrape)
	}
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(scrape)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for series, min := range map[string]float64{
		`sshgate_sshd_connections_accepted_total`:                                               2,
		`sshgate_sshd_handshakes_total{result="ok"}`:                                            1,
		`sshgate_sshd_handshakes_total{result="failed"}`:                                        1,
		`sshgate_auth_attempts_total{method="publickey",result="ok"}`:                           1,
		`sshgate_auth_attempts_total{method="publickey",result="failed"}`:                       1,
		`sshgate_relay_data_bytes_total{direction="out"}`:                                       7,
		`sshgate_target_open_duration_seconds_count{backend="upstream",result="ok"}`:            1,
		`sshgate_target_open_duration_seconds_bucket{backend="upstream",result="ok",le="+Inf"}`: 1,
		`sshgate_audit_dropped_total`:                                                           0,
		`sshgate_docker_container_starts_total`:                                                 0,
	} {
		v, ok := metricValue(scrape, series)
		if !ok || v < min {
			t.Errorf("%s = %v (present %v), want >= %v", series, v, ok, min)
		}
	}
	for _, leak := range []string{"alice", "web-1", "127.0.0.1"} {
		if strings.Contains(scrape, leak) {
			t.Errorf("metrics hold an unbounded label value %q", leak)
		}
	}

	// Drain: with a session open, SIGTERM starts the drain; /readyz says so.
	cmd := w.alice.SSHTo("web-1", nil, "echo started; exec sleep 300")
	outBuf := &harness.Buffer{}
	cmd.Stdout = outBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	if !outBuf.WaitFor("started", short) {
		t.Fatal("session did not start")
	}
	syscall.Kill(w.gate.PID(), syscall.SIGTERM)
	var code int
	var body string
	if !harness.Eventually(short, func() bool { code, body = httpGet(t, base+"/readyz"); return code == 503 }) {
		t.Fatalf("/readyz while draining = %d %q", code, body)
	}
	if !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %q", body)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz while draining = %d", code)
	}
}

// A recording on a full disk (a 64 KiB tmpfs) fails mid-session:
// fail-closed ends the session with one line and exit 1; fail-open lets it
// finish. Either way the gate logs it and does not panic.
func TestRecordingFullDisk(t *testing.T) {
	t.Parallel()
	gateOnly(t)
	for _, mode := range []string{"fail-closed", "fail-open"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			mnt := filepath.Join(dir, "small")
			os.Mkdir(mnt, 0o700)
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt).CombinedOutput(); err != nil {
				t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
			}
			t.Cleanup(func() { exec.Command("umount", mnt).Run() })
			cfg := filepath.Join(dir, "gate.yaml")
			os.WriteFile(cfg, []byte("recordings:\n  dir: "+mnt+"\n  on_error: "+mode+"\n"), 0o600)
			w := newObsWorld(t, "--config", cfg)
			cmd := w.alice.SSHTo("web-1", []string{"-tt"}, `head -c 400000 /dev/zero | tr '\0' x; echo; sleep 3; echo SURVIVED`)
			r := harness.Run(cmd, nil, short)
			if mode == "fail-closed" {
				msg := oneLine(t, "message", clientNoise(r.Stderr))
				if r.Code != 1 || strings.Contains(r.Stdout, "SURVIVED") || !strings.Contains(msg, "sshgate: this session must be recorded and the recording failed (ref ") {
					t.Errorf("fail-closed: exit %d, stdout %.200q, stderr %q", r.Code, r.Stdout, r.Stderr)
				}
				noGoError(t, "message", msg)
			} else if r.Code != 0 || !strings.Contains(r.Stdout, "SURVIVED") {
				t.Errorf("fail-open: exit %d, stdout %.200q, stderr %q", r.Code, r.Stdout, r.Stderr)
			}
			if !harness.Eventually(short, func() bool { return w.gate.LogContains("session recording failed") }) {
				t.Error("the gate did not log the recording failure")
			}
			waitNoSessions(t, w.gate)
		})
	}
}

// Container starts, their failures and the docker backend's open time are
// counted.
func TestMetricsDocker(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "promtool")
	addr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	w := newDockerWorld(t, harness.GateOptions{Args: []string{"--metrics-listen", addr}})
	good := w.target(t, "metrics", "--docker", harness.TestImage, "--user", "1000")
	bad := w.target(t, "metrics-bad", "--docker", harness.TestImage, "--user", "nosuchuser")
	if r := w.ssh(t, good, nil, "echo hi"); r.Code != 0 || r.Stdout != "hi\n" {
		t.Fatalf("good target: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := w.ssh(t, bad, nil, "echo hi"); r.Code == 0 {
		t.Fatalf("bad target: exit 0 %q", r.Stdout)
	}
	_, scrape := httpGet(t, "http://"+addr+"/metrics")
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(scrape)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for series, min := range map[string]float64{
		`sshgate_docker_container_starts_total`:                                       2,
		`sshgate_docker_container_start_failures_total`:                               1,
		`sshgate_target_open_duration_seconds_count{backend="docker",result="ok"}`:    1,
		`sshgate_target_open_duration_seconds_count{backend="docker",result="error"}`: 1,
	} {
		if v, ok := metricValue(scrape, series); !ok || v < min {
			t.Errorf("%s = %v (present %v), want >= %v", series, v, ok, min)
		}
	}
	waitNoContainers(t, good, 30*time.Second)
	waitNoContainers(t, bad, 30*time.Second)
}

// Honeypot mode records failed password attempts, never a password that
// logged in.
func TestHoneypotPasswords(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "sshpass")
	cfg := filepath.Join(t.TempDir(), "gate.yaml")
	os.WriteFile(cfg, []byte("recordings:\n  honeypot_passwords: true\n"), 0o600)
	w := newObsWorld(t, "--config", cfg)
	w.gate.AdminStdin(t, "right-Passw0rd\n", "user", "add", "bob", "--password-stdin")
	w.gate.Admin(t, "grant", "bob", "--target", "web-1", "--login", "root")
	if r := harness.Run(w.alice.WithUser("bob").WithPassword("right-Passw0rd").SSHTo("web-1", nil, "echo in"), nil, short); r.Code != 0 {
		t.Fatalf("bob with his password: exit %d %q", r.Code, r.Stderr)
	}
	harness.Run(w.alice.WithUser("bob").WithPassword("wrong-pw").SSHTo("web-1", nil, "true"), nil, short)
	harness.Run(w.alice.WithUser("mallory").WithPassword("hunter2").SSHTo("", nil, "true"), nil, short)

	file := filepath.Join(w.gate.DataDir, "recordings", "honeypot-passwords.jsonl")
	var tried map[string]string
	ok := harness.Eventually(short, func() bool {
		data, _ := os.ReadFile(file)
		tried = map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var a struct{ User, Password, Remote, Client string }
			if json.Unmarshal([]byte(l), &a) == nil && strings.HasPrefix(a.Remote, "127.0.0.1:") && strings.HasPrefix(a.Client, "SSH-2.0-OpenSSH") {
				tried[a.Password] = a.User
			}
		}
		return len(tried) >= 2
	})
	if !ok || tried["wrong-pw"] != "bob+web-1" || tried["hunter2"] != "mallory" {
		t.Errorf("recorded attempts %v", tried)
	}
	if _, leaked := tried["right-Passw0rd"]; leaked {
		t.Error("a password that logged in was recorded")
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("honeypot log mode: %v", err)
	}
}
