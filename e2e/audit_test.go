package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden audit streams in testdata/audit")

// auditLog reads the gate's audit file (the default DATA/audit/audit.jsonl).
type auditLog struct {
	path string
	off  int64
}

// next waits until the connections opened since the last call are all
// closed, and returns their events.
func (a *auditLog) next(t *testing.T) []map[string]any {
	t.Helper()
	var evs []map[string]any
	var size int64
	ok := harness.Eventually(30*time.Second, func() bool {
		evs, size = a.read(t)
		open, closed := 0, 0
		for _, e := range evs {
			switch e["type"] {
			case "conn.open":
				open++
			case "conn.close":
				closed++
			}
		}
		return open > 0 && open == closed
	})
	if !ok {
		t.Fatalf("audit: connections not all closed in %s; events so far: %v", a.path, evs)
	}
	a.off = size
	return evs
}

func (a *auditLog) read(t *testing.T) ([]map[string]any, int64) {
	f, err := os.Open(a.path)
	if err != nil {
		return nil, a.off
	}
	defer f.Close()
	f.Seek(a.off, io.SeekStart)
	data, _ := io.ReadAll(f)
	end := bytes.LastIndexByte(data, '\n') + 1
	var evs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data[:end]))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line is not JSON: %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs, a.off + int64(end)
}

// normalise replaces what changes from run to run (times, ids, addresses,
// durations, byte counts of whole sessions, temp dirs, ports) and orders
// the events by connection, keeping each connection's order.
func normalise(evs []map[string]any, dirs map[string]string) string {
	ids := map[string]string{}
	alias := func(prefix string, v any) string {
		s := fmt.Sprint(v)
		if _, ok := ids[s]; !ok {
			n := 0
			for k := range ids {
				if strings.HasPrefix(ids[k], prefix) {
					n++
				}
				_ = k
			}
			ids[s] = fmt.Sprintf("%s%d", prefix, n+1)
		}
		return ids[s]
	}
	port := regexp.MustCompile(`:\d+$`)
	var lines []string
	order := map[string]int{}
	for _, e := range evs {
		for _, k := range []string{"time", "id", "gate_id", "duration_ms"} {
			delete(e, k)
		}
		if e["type"] == "session.end" || e["type"] == "forward" {
			for _, k := range []string{"bytes_in", "bytes_out"} {
				if _, ok := e[k]; ok {
					e[k] = "N"
				}
			}
		}
		if v, ok := e["conn_id"]; ok {
			e["conn_id"] = alias("C", v)
		}
		if v, ok := e["session_id"]; ok {
			e["session_id"] = alias("S", v)
		}
		if _, ok := e["client_addr"]; ok {
			e["client_addr"] = "ADDR"
		}
		if _, ok := e["key_fingerprint"]; ok {
			e["key_fingerprint"] = "FP"
		}
		if v, ok := e["destination"].(string); ok {
			e["destination"] = port.ReplaceAllString(v, ":PORT")
		}
		b, _ := json.Marshal(e)
		s := string(b)
		for dir, name := range dirs {
			s = strings.ReplaceAll(s, dir, name)
		}
		c := fmt.Sprint(e["conn_id"])
		if _, ok := order[c]; !ok {
			order[c] = len(order)
		}
		lines = append(lines, fmt.Sprintf("%04d %04d %s", order[c], len(lines), s))
	}
	sort.Strings(lines)
	for i := range lines {
		lines[i] = lines[i][10:]
	}
	return strings.Join(lines, "\n") + "\n"
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "audit", name+".jsonl")
	if *updateGolden {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("audit stream %s differs from %s (-update rewrites it)\ngot:\n%s\nwant:\n%s", name, path, got, want)
	}
}

// TestAuditGolden runs scripted sessions of every kind through the gate, one
// after another, and compares each one's audit events with a golden stream.
func TestAuditGolden(t *testing.T) {
	gateOnly(t)
	harness.RequireTools(t, "scp", "sftp", "rsync", "lftp")
	w := newWorld(t, worldOptions{forwarding: true})
	log := &auditLog{path: filepath.Join(w.gate.DataDir, "audit", "audit.jsonl")}
	remote, local := t.TempDir(), t.TempDir()
	dirs := map[string]string{remote: "$REMOTE", local: "$LOCAL"}
	small := filepath.Join(local, "small.txt")
	os.WriteFile(small, []byte("hello audit\n"), 0o644)

	step := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			f(t)
			var keep []map[string]any
			for _, e := range log.next(t) {
				// ssh -L's readiness probes (connections that carried nothing) vary in number.
				if e["type"] == "forward" && e["bytes_in"] == float64(0) {
					continue
				}
				// lftp closes its FISH channel when done, racing the
				// target's exit-status: the session ends with or without one.
				if name == "fish" && e["type"] == "session.end" {
					delete(e, "exit_status")
				}
				keep = append(keep, e)
			}
			golden(t, name, normalise(keep, dirs))
		})
	}

	step("exec", func(t *testing.T) {
		r := harness.Run(w.alice.SSHTo("web-1", nil, "echo hello; printf '\\033]0;title\\007' >/dev/null; exit 3 # \x1b[31m"), nil, short)
		if r.Code != 3 {
			t.Fatalf("exit %d %v %q", r.Code, r.Err, r.Stderr)
		}
	})
	step("pty", func(t *testing.T) {
		cmd := w.alice.SSHTo("web-1", []string{"-tt"})
		cmd.Env = append(cmd.Env, "TERM=xterm-256color")
		p := startPTY(t, cmd, 24, 80)
		p.do(t, "true")
		fmt.Fprintf(p.ptmx, "exit 5\r")
		select {
		case <-p.done:
		case <-time.After(short):
			t.Fatal("ssh did not exit after `exit 5`")
		}
		if code := cmd.ProcessState.ExitCode(); code != 5 {
			t.Fatalf("exit %d", code)
		}
	})
	step("sftp", func(t *testing.T) {
		batch := filepath.Join(local, "batch")
		os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s/up.txt\nmkdir %s/d\nrename %s/up.txt %s/d/moved.txt\nget %s/d/moved.txt %s/down.txt\nrm %s/d/moved.txt\nrmdir %s/d\n",
			small, remote, remote, remote, remote, remote, local, remote, remote)), 0o600)
		harness.MustRun(t, w.alice.SFTP("-b", batch, w.alice.Dest("web-1")), nil, short)
	})
	for _, mode := range []struct{ name, flag string }{{"scp-sftp", ""}, {"scp-legacy", "-O"}} {
		step(mode.name, func(t *testing.T) {
			args := func(a ...string) []string {
				if mode.flag != "" {
					return append([]string{mode.flag}, a...)
				}
				return a
			}
			dst := filepath.Join(remote, mode.name+".txt")
			harness.MustRun(t, w.alice.SCP(args(small, w.alice.Dest("web-1")+":"+dst)...), nil, short)
			harness.MustRun(t, w.alice.SCP(args(w.alice.Dest("web-1")+":"+dst, filepath.Join(local, mode.name+".back"))...), nil, short)
		})
	}
	step("fish", func(t *testing.T) {
		// lftp runs its connect program with its own host arguments; the
		// wrapper keeps only the remote command and reaches the gate.
		wrapper := filepath.Join(local, "fish-ssh")
		script := fmt.Sprintf("#!/bin/sh\nfor last; do :; done\nexec %s %s \"$last\"\n", w.alice.SSHCommandLine(), harness.ShellQuote(w.alice.Dest("web-1")))
		os.WriteFile(wrapper, []byte(script), 0o755)
		cmds := fmt.Sprintf("set fish:connect-program %s; open fish://alice@127.0.0.1; put %s -o %s/fish.txt; get %s/fish.txt -o %s/fish.back; mkdir %s/fd; mv %s/fish.txt %s/fd/moved.txt; rm %s/fd/moved.txt; rmdir %s/fd",
			wrapper, small, remote, remote, local, remote, remote, remote, remote, remote)
		harness.MustRun(t, exec.Command("lftp", "-c", cmds), nil, short)
		if b, _ := os.ReadFile(filepath.Join(local, "fish.back")); string(b) != "hello audit\n" {
			t.Fatalf("lftp get: %q", b)
		}
	})
	step("rsync", func(t *testing.T) {
		src := filepath.Join(local, "site")
		os.MkdirAll(filepath.Join(src, "a"), 0o755)
		os.WriteFile(filepath.Join(src, "a", "x.txt"), []byte("x"), 0o644)
		harness.MustRun(t, w.alice.Rsync("-a", src+"/", w.alice.Dest("web-1")+":"+remote+"/site/"), nil, short)
		harness.MustRun(t, w.alice.Rsync("-a", w.alice.Dest("web-1")+":"+remote+"/site/", local+"/site-back/"), nil, short)
	})
	step("forward", func(t *testing.T) {
		echo := echoServer(t)
		lport, cmd, _ := startForward(t, w.alice, echo)
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", lport))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		c.SetDeadline(time.Now().Add(short))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q %v", buf, err)
		}
		c.Close()
		// The forward event is written when the channel closes; then end ssh.
		if !harness.Eventually(short, func() bool {
			evs, _ := log.read(t)
			for _, e := range evs {
				if e["type"] == "forward" && e["bytes_in"] != float64(0) { // not a readiness probe
					return true
				}
			}
			return false
		}) {
			t.Fatal("no forward event")
		}
		cmd.Process.Signal(os.Interrupt)
	})
	step("escapes", func(t *testing.T) {
		// Terminal escapes in a command line and in a file name.
		harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true '\x1b]0;owned\x07\r\n\x9b2J'"), nil, short)
		name := filepath.Join(remote, "evil\x1b[2J\x07.txt")
		harness.MustRun(t, w.alice.SCP("-O", small, w.alice.Dest("web-1")+":"+harness.ShellQuote(name)), nil, short)
		if _, err := os.Stat(name); err != nil {
			t.Fatal(err)
		}
	})
	step("auth-failure", func(t *testing.T) {
		key, _ := harness.Keygen(t, t.TempDir(), "stranger")
		r := harness.Run(w.gate.Client("mallory", key).SSHTo("web-1", nil, "true"), nil, short)
		if r.Code == 0 {
			t.Fatal("a stranger's key got in")
		}
		// An authenticated connection afterwards closes the step.
		harness.MustRun(t, w.alice.SSHTo("", nil, "help"), nil, short)
	})
	// No raw control byte from any attacker-chosen field reaches the file.
	data, err := os.ReadFile(log.path)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range data {
		if b < 0x20 && b != '\n' || b == 0x7f || b == 0xc2 && i+1 < len(data) && data[i+1] >= 0x80 && data[i+1] <= 0x9f {
			t.Fatalf("raw control byte %#x at offset %d of the audit file", b, i)
		}
	}
}

// TestAuditFailClosed: a fail-closed target's running session ends with a
// clear message when the audit webhook starts failing, and new sessions are
// refused; a fail-open target keeps serving.
func TestAuditFailClosed(t *testing.T) {
	gateOnly(t)
	var failing atomic.Bool
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(hook.Close)
	cfg := filepath.Join(t.TempDir(), "gate.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("audit:\n  webhook:\n    url: %s\n    retries: 0\n    timeout: 2s\n  failure_by_target:\n    web-1: fail-closed\n", hook.URL)), 0o600)

	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	g := harness.StartGate(t, harness.GateOptions{Args: []string{"--config", cfg}})
	sshd.Authorize(t, g.GateKey(t))
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	g.Admin(t, "target", "add", "web-2", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := g.AddUser(t, "alice")
	g.Admin(t, "grant", "alice", "--env", "prod", "--login", "root")

	// A running session on the fail-closed target.
	cmd := alice.SSHTo("web-1", nil, "echo started; sleep 120")
	stdout, stderr := &harness.Buffer{}, &harness.Buffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	if !stdout.WaitFor("started", short) {
		t.Fatalf("session did not start: %q", stderr.String())
	}

	// The webhook fails; the next event (another connection) finds out.
	failing.Store(true)
	r := harness.Run(alice.SSHTo("web-2", nil, "echo open"), nil, short)
	if r.Code != 0 || r.Stdout != "open\n" {
		t.Errorf("fail-open target: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	select {
	case <-done:
	case <-time.After(short):
		t.Fatal("the fail-closed session was not ended")
	}
	if code := cmd.ProcessState.ExitCode(); code != 255 {
		t.Errorf("ended session: exit %d, want 255", code)
	}
	msg := oneLine(t, "ended session stderr", stderr.String())
	if !strings.Contains(msg, "audit log became unavailable") || !strings.Contains(msg, "web-1") {
		t.Errorf("ended session message %q", msg)
	}
	// New sessions are refused with one line, until the webhook recovers.
	r = harness.Run(alice.SSHTo("web-1", nil, "echo no"), nil, short)
	if r.Code != 1 || r.Stdout != "" || !strings.Contains(oneLine(t, "refusal", r.Stderr), "requires the audit log") {
		t.Errorf("new session while failing: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	noGoError(t, "refusal", r.Stderr)
	if !g.LogContains("audit sink failing") {
		t.Error("no log line about the failing sink")
	}
	failing.Store(false)
	harness.MustRun(t, alice.SSHTo("web-2", nil, "true"), nil, short) // an event that gets through
	if !harness.Eventually(short, func() bool {
		r := harness.Run(alice.SSHTo("web-1", nil, "echo back"), nil, short)
		return r.Code == 0 && r.Stdout == "back\n"
	}) {
		t.Error("the fail-closed target did not come back after the webhook recovered")
	}
}

// TestAuditDocker: file events with their sha256 for transfers served by
// sshgate-agent in a container (pkg/sftp, which may answer reads out of
// order), in both scp modes.
func TestAuditDocker(t *testing.T) {
	harness.RequireTools(t, "scp")
	w := newDockerWorld(t)
	name := w.target(t, "audit", "--docker", harness.TestImage, "--per", "user", "--idle-ttl", "10s")
	if r := w.ssh(t, name, nil, "true"); r.Code != 0 {
		t.Fatalf("exit %d stderr %q", r.Code, r.Stderr)
	}
	src := filepath.Join(t.TempDir(), "three.bin")
	data := bytes.Repeat([]byte("sshgate audit "), 3<<20/14)
	os.WriteFile(src, data, 0o644)
	sum := sha256File(t, src)
	log := &auditLog{path: filepath.Join(w.gate.DataDir, "audit", "audit.jsonl")}
	log.next(t)
	for _, mode := range []string{"", "-O"} {
		args := func(a ...string) []string {
			if mode != "" {
				return append([]string{mode}, a...)
			}
			return a
		}
		harness.MustRun(t, w.alice.SCP(args(src, w.alice.Dest(name)+":/tmp/three"+mode)...), nil, long)
		harness.MustRun(t, w.alice.SCP(args(w.alice.Dest(name)+":/tmp/three"+mode, filepath.Join(t.TempDir(), "back"))...), nil, long)
		var got []string
		for _, e := range log.next(t) {
			if e["type"] == "file" {
				got = append(got, fmt.Sprintf("%v %v %v %.0f %v", e["protocol"], e["op"], e["path"], e["size"], e["sha256"] == sum))
			}
		}
		proto := map[string]string{"": "sftp", "-O": "scp"}[mode]
		want := []string{
			fmt.Sprintf("%s write /tmp/three%s %d true", proto, mode, len(data)),
			fmt.Sprintf("%s read /tmp/three%s %d true", proto, mode, len(data)),
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("scp %q: file events\n%s\nwant\n%s", mode, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	waitNoContainers(t, name, 2*time.Minute) // reaped after the idle TTL
}

// TestAuditNoFileHash: with audit.file_hash: none, file events keep their
// size, path and result and carry no sha256; the default carries it (the
// golden streams), and the files still arrive whole.
func TestAuditNoFileHash(t *testing.T) {
	gateOnly(t)
	cfg := filepath.Join(t.TempDir(), "gate.yaml")
	os.WriteFile(cfg, []byte("audit:\n  file_hash: none\n"), 0o600)
	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	g := harness.StartGate(t, harness.GateOptions{Args: []string{"--config", cfg}})
	sshd.Authorize(t, g.GateKey(t))
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := g.AddUser(t, "alice")
	g.Admin(t, "grant", "alice", "--target", "web-1", "--login", "root")
	log := &auditLog{path: filepath.Join(g.DataDir, "audit", "audit.jsonl")}

	remote, local := t.TempDir(), t.TempDir()
	data := bytes.Repeat([]byte("no hash, all bytes\n"), 100000) // 1.9 MB: many SFTP packets
	src := filepath.Join(local, "src.bin")
	os.WriteFile(src, data, 0o644)
	for _, mode := range []string{"", "-O"} {
		dst, back := filepath.Join(remote, "dst"+mode), filepath.Join(local, "back"+mode)
		args := func(a ...string) []string {
			if mode != "" {
				return append([]string{mode}, a...)
			}
			return a
		}
		harness.MustRun(t, alice.SCP(args(src, alice.Dest("web-1")+":"+dst)...), nil, long)
		harness.MustRun(t, alice.SCP(args(alice.Dest("web-1")+":"+dst, back)...), nil, long)
		if b, _ := os.ReadFile(back); !bytes.Equal(b, data) {
			t.Fatalf("scp %s: the copy back differs (%d bytes, want %d)", mode, len(b), len(data))
		}
	}
	var files []string
	for _, e := range log.next(t) {
		if e["type"] != "file" {
			continue
		}
		if _, ok := e["sha256"]; ok {
			t.Errorf("file event with a sha256: %v", e)
		}
		files = append(files, fmt.Sprintf("%v %v %v size=%v %v", e["protocol"], e["op"], filepath.Base(fmt.Sprint(e["path"])), e["size"], e["result"]))
	}
	sort.Strings(files)
	want := []string{
		"scp read dst-O size=1.9e+06 ok", "scp write dst-O size=1.9e+06 ok",
		"sftp read dst size=1.9e+06 ok", "sftp write dst size=1.9e+06 ok",
	}
	if strings.Join(files, "\n") != strings.Join(want, "\n") {
		t.Errorf("file events:\n%s\nwant:\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}
}
