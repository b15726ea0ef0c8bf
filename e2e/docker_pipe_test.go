package e2e_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/e2e/harness"
)

// A session's stdin on a pipe the gate passes to the agent (package
// fdpass): exec and shell sessions without a PTY into a container over the
// socket transport. Everything a user sees must be as over the channel:
// stdin and EOF, output, exit codes, signals, big transfers byte-exact both
// ways, a client killed mid-transfer (no process, descriptor or goroutine
// left in the gate or the agent).

// stdinHolders prints "pipe" when the shell's stdin is a pipe, then
// every other process in the container holding that same pipe, then
// "checked". Over the channel the agent holds the pipe's write end; with
// the gate's pipe nobody in the container does.
const stdinHolders = `ino=$(readlink /proc/$$/fd/0); case $ino in pipe:*) echo pipe;; *) echo "not a pipe: $ino";; esac; ` +
	`for p in /proc/[0-9]*; do [ "$p" = /proc/$$ ] && continue; for f in $p/fd/*; do [ "$(readlink $f 2>/dev/null)" = "$ino" ] && echo "held by ${p#/proc/}"; done; done; echo checked`

func TestDockerStdinPipe(t *testing.T) {
	env, pprof := harness.PProfEnv(t)
	w := newDockerWorld(t, harness.GateOptions{Env: []string{env}})
	name := w.target(t, "pipe", "--docker", harness.TestImage, "--user", "1000", "--per", "user", "--idle-ttl", "120s")
	if r := w.ssh(t, name, nil, "true"); r.Code != 0 {
		t.Fatalf("first connection: exit %d stderr %q", r.Code, r.Stderr)
	}
	ids := containersOf(t, name)
	if len(ids) != 1 {
		t.Fatalf("containers of %s: %v, want one", name, ids)
	}
	box := ids[0]

	t.Run("on the gate's pipe", func(t *testing.T) {
		// The client's stdin stays open while the command looks (over the
		// channel the agent closes its write end at the client's EOF).
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pw.Close()
		cmd := w.alice.SSHTo(name, nil, stdinHolders+"; cat")
		cmd.Stdin = pr
		s := startSSH(t, cmd)
		pr.Close()
		if !s.stdout.WaitFor("checked\n", short) || s.stdout.String() != "pipe\nchecked\n" {
			t.Errorf("stdout %q stderr %q: want stdin a pipe nobody in the container writes", s.stdout.String(), s.stderr.String())
		}
		pw.Write([]byte("end\n"))
		pw.Close()
		<-s.done
		if s.stdout.String() != "pipe\nchecked\nend\n" || s.cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("exit %d stdout %q", s.cmd.ProcessState.ExitCode(), s.stdout.String())
		}
		if !w.gate.LogContains("stdin=pipe") {
			t.Error("the gate did not log a session with stdin=pipe")
		}
	})

	t.Run("stdin, output and exit code", func(t *testing.T) {
		r := w.ssh(t, name, []byte("0123456789"), "wc -c; echo err >&2; exit 3")
		if r.Code != 3 || strings.TrimSpace(r.Stdout) != "10" || r.Stderr != "err\n" {
			t.Errorf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		r = w.ssh(t, name, []byte("abc"), "cat; echo; echo eof")
		if r.Code != 0 || r.Stdout != "abc\neof\n" {
			t.Errorf("EOF: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		r = w.ssh(t, name, nil, "cat; echo empty")
		if r.Code != 0 || r.Stdout != "empty\n" {
			t.Errorf("empty stdin: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("audit counts stdin", func(t *testing.T) {
		log := &auditLog{path: filepath.Join(w.gate.DataDir, "audit", "audit.jsonl")}
		log.next(t)
		in := bytes.Repeat([]byte("z"), 300001)
		if r := w.ssh(t, name, in, "wc -c"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "300001" {
			t.Fatalf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		var ends []string
		for _, e := range log.next(t) {
			if e["type"] == "session.end" {
				ends = append(ends, fmt.Sprintf("in %v out %v exit %v", e["bytes_in"], e["bytes_out"], e["exit_status"]))
			}
		}
		if want := "in 300001 out 7 exit 0"; len(ends) != 1 || ends[0] != want {
			t.Errorf("session.end events %q, want one %q", ends, want)
		}
	})

	t.Run("big both ways", func(t *testing.T) {
		big, sum := bigFile(t)
		data, err := os.ReadFile(big)
		if err != nil {
			t.Fatal(err)
		}
		r := harness.Run(w.alice.SSHTo(name, nil, "sha256sum"), data, long)
		if f := strings.Fields(r.Stdout); r.Code != 0 || len(f) == 0 || f[0] != sum {
			t.Fatalf("sha256sum of stdin: exit %d stdout %q stderr %q, want %s", r.Code, r.Stdout, r.Stderr, sum)
		}
		r = harness.Run(w.alice.SSHTo(name, nil, "cat > /tmp/big.bin && sha256sum /tmp/big.bin"), data, long)
		if f := strings.Fields(r.Stdout); r.Code != 0 || len(f) == 0 || f[0] != sum {
			t.Fatalf("upload: exit %d stdout %q stderr %q, want %s", r.Code, r.Stdout, r.Stderr, sum)
		}
		r = harness.Run(w.alice.SSHTo(name, nil, "cat /tmp/big.bin; rm /tmp/big.bin"), nil, long)
		h := sha256.Sum256([]byte(r.Stdout))
		if r.Code != 0 || hex.EncodeToString(h[:]) != sum {
			t.Fatalf("download: exit %d, %d bytes, stderr %q", r.Code, len(r.Stdout), r.Stderr)
		}
		// A process that reads 5 bytes and exits: the rest of stdin goes
		// nowhere, the client ends with the process's status.
		r = harness.Run(w.alice.SSHTo(name, nil, "head -c 5; exit 4"), data, long)
		if r.Code != 4 || r.Stdout != string(data[:5]) {
			t.Errorf("early exit: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("signals", func(t *testing.T) {
		cl := w.alice.XDial(t, name)
		for _, tc := range []struct {
			cmd    string
			sig    ssh.Signal
			status int
			signal string
			ready  string // signalled once stdout holds this
			out    string
		}{
			{`trap 'echo term; exit 7' TERM; echo ready; while :; do sleep 1; done`, ssh.SIGTERM, 7, "", "ready\n", "ready\nterm\n"},
			// cat echoes the input (it came through the pipe) before the kill.
			{`echo ready; exec cat`, ssh.SIGKILL, -1, "KILL", "ready\nsome input\n", "ready\nsome input\n"},
		} {
			s, err := cl.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			stdin, _ := s.StdinPipe()
			out := &harness.Buffer{}
			s.Stdout = out
			if err := s.Start(tc.cmd); err != nil {
				t.Fatal(err)
			}
			if _, err := stdin.Write([]byte("some input\n")); err != nil {
				t.Fatal(err)
			}
			if !out.WaitFor(tc.ready, short) {
				t.Fatalf("%s: not ready: %q", tc.cmd, out.String())
			}
			if err := s.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			err = s.Wait()
			var ee *ssh.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("%s: wait %v", tc.cmd, err)
			}
			if tc.status >= 0 && ee.ExitStatus() != tc.status || tc.signal != "" && ee.Signal() != tc.signal || out.String() != tc.out {
				t.Errorf("%s after %s: status %d signal %q stdout %q", tc.cmd, tc.sig, ee.ExitStatus(), ee.Signal(), out.String())
			}
			stdin.Close()
		}
	})

	t.Run("client killed mid-transfer", func(t *testing.T) {
		// The agent's (PID 1's) open fds; busybox ls fails on an fd closed
		// while it lists, so the count is read through wc, once more if needed.
		agentFDs := func() int {
			for try := 0; try < 3; try++ {
				out, err := exec.Command("docker", "exec", box, "sh", "-c", "ls /proc/1/fd 2>/dev/null | wc -l").Output()
				if n, cerr := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && cerr == nil {
					return n
				}
			}
			t.Fatal("agent fds: docker exec failed")
			return 0
		}
		catRuns := func() bool {
			out, _ := exec.Command("docker", "top", box, "-o", "pid,args").Output()
			return strings.Contains(string(out), "cat")
		}
		time.Sleep(time.Second)                    // the keeper agent has redialed its spare connection
		baseG, _, err := harness.Goroutines(pprof) // first: its HTTP connection stays open
		if err != nil {
			t.Fatal(err)
		}
		baseFDs := w.gate.WaitBaseline(t, w.gate.Stats(t), 0, time.Second)
		baseAgent := agentFDs()
		for i := 0; i < 3; i++ {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd := w.alice.SSHTo(name, nil, "cat > /dev/null")
			cmd.Stdin = pr
			s := startSSH(t, cmd)
			pr.Close()
			var sent atomic.Int64
			writerDone := make(chan struct{})
			go func() {
				defer close(writerDone)
				buf := make([]byte, 1<<20)
				for {
					m, err := pw.Write(buf)
					sent.Add(int64(m))
					if err != nil {
						return
					}
				}
			}()
			// Once 64 MiB went in (more than every buffer on the way), kill it.
			if !harness.Eventually(short, func() bool { return sent.Load() > 64<<20 }) {
				t.Fatalf("run %d: the transfer did not get going", i)
			}
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
			pw.Close()
			<-writerDone
			t.Logf("run %d: client killed after %d MiB", i, sent.Load()>>20)
			if !harness.Eventually(30*time.Second, func() bool { return !catRuns() }) {
				t.Errorf("run %d: cat still runs in the container after its client was killed", i)
			}
		}
		w.gate.WaitBaseline(t, baseFDs, 1, 30*time.Second)
		var g int
		var dump string
		if !harness.Eventually(30*time.Second, func() bool {
			g, dump, _ = harness.Goroutines(pprof)
			return g <= baseG+2
		}) {
			t.Errorf("gate goroutines %d, baseline %d:\n%s", g, baseG, dump)
		}
		var a int
		if !harness.Eventually(30*time.Second, func() bool { a = agentFDs(); return a <= baseAgent }) {
			out, _ := exec.Command("docker", "exec", box, "ls", "-l", "/proc/1/fd").Output()
			t.Errorf("agent fds %d, baseline %d:\n%s", a, baseAgent, out)
		}
	})

	t.Run("a PTY keeps stdin on the channel", func(t *testing.T) {
		r := harness.Run(w.alice.SSHTo(name, []string{"-tt"}, "echo tty"), nil, short)
		if r.Code != 0 || !strings.Contains(r.Stdout, "tty") {
			t.Errorf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		if !w.gate.LogContains("pty=true stdin=channel") {
			t.Error("no PTY session logged with stdin=channel")
		}
	})
}

// Where the stdin pipe cannot be had, stdin stays on the channel and
// nothing else changes: the exec transport (an exec stream, no socket to
// pass a descriptor on) and, with SSHGATE_E2E_OLD_AGENT naming an agent
// binary built before the pipe existed, an agent that answers the request
// false (the kernel drops the descriptor it never reads).
func TestDockerStdinPipeFallback(t *testing.T) {
	cases := []struct{ name, config string }{{"exec transport", "docker:\n  transport: exec\n"}}
	if old := os.Getenv("SSHGATE_E2E_OLD_AGENT"); old != "" {
		cases = append(cases, struct{ name, config string }{"old agent", "docker:\n  agent_path: " + old + "\n"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "gate.yaml")
			if err := os.WriteFile(cfg, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			w := newDockerWorld(t, harness.GateOptions{Args: []string{"--config", cfg}})
			name := w.target(t, "fb", "--docker", harness.TestImage, "--user", "1000", "--per", "user", "--idle-ttl", "60s")
			if r := w.ssh(t, name, nil, "true"); r.Code != 0 {
				t.Fatalf("first connection: exit %d stderr %q", r.Code, r.Stderr)
			}
			r := w.ssh(t, name, []byte("0123456789"), "wc -c; echo err >&2; exit 3")
			if r.Code != 3 || strings.TrimSpace(r.Stdout) != "10" || r.Stderr != "err\n" {
				t.Errorf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
			}
			big, _ := bigFile(t)
			data, err := os.ReadFile(big)
			if err != nil {
				t.Fatal(err)
			}
			r = harness.Run(w.alice.SSHTo(name, nil, "sha256sum"), data[:32<<20], long)
			want := sha256.Sum256(data[:32<<20])
			if f := strings.Fields(r.Stdout); r.Code != 0 || len(f) == 0 || f[0] != hex.EncodeToString(want[:]) {
				t.Errorf("sha256sum of 32 MiB: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
			}
			if w.gate.LogContains("stdin=pipe") || !w.gate.LogContains("stdin=channel") {
				t.Error("want every session logged with stdin=channel")
			}
		})
	}
}
