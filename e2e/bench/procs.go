package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// server is a long-lived process the bench started (sshd or a gate). It runs
// in its own process group; stop kills the group and every descendant (sshd
// sessions call setsid and leave the group).
type server struct {
	name string
	cmd  *exec.Cmd
	log  string // file holding its stdout and stderr
	done chan struct{}
	err  error
}

// registry holds every server and temp dir so that cleanup, from a normal
// return or a signal, stops and removes all of them exactly once.
type registry struct {
	mu      sync.Mutex
	servers []*server
	hooks   []func() // run after the servers stop (containers by label)
	dirs    []string
	keep    bool
	closed  bool
	done    chan struct{} // closed when cleanup has finished
}

var reg = &registry{done: make(chan struct{})}

func (r *registry) addServer(s *server) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		s.kill()
		return errors.New("interrupted")
	}
	r.servers = append(r.servers, s)
	return nil
}

// addHook adds f to what cleanup runs once the servers are stopped.
func (r *registry) addHook(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = append(r.hooks, f)
}

func (r *registry) addDir(d string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dirs = append(r.dirs, d)
}

// cleanup stops every server, newest first, runs the hooks, and removes the
// temp dirs unless -keep. Safe to call more than once and from any
// goroutine: a second call returns when the first has finished (so that main,
// returning after an interrupt, does not exit while the signal handler is
// still cleaning up).
func (r *registry) cleanup() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		<-r.done
		return
	}
	r.closed = true
	defer close(r.done)
	servers, hooks, dirs := r.servers, r.hooks, r.dirs
	r.mu.Unlock()
	for i := len(servers) - 1; i >= 0; i-- {
		servers[i].kill()
	}
	for _, f := range hooks {
		f()
	}
	if r.keep {
		for _, d := range dirs {
			logf("kept %s", d)
		}
		return
	}
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}

func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// kill SIGTERMs a gate (so it can exit cleanly), SIGKILLs whatever is left
// after a grace, including descendants, and waits for the process.
func (s *server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pid := s.cmd.Process.Pid
	kids := harness.Descendants(pid)
	if s.alive() {
		syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(3 * time.Second):
		}
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	for _, k := range append(kids, harness.Descendants(pid)...) {
		syscall.Kill(k, syscall.SIGKILL)
	}
	<-s.done
}

// startServer runs argv in its own process group with output to logFile.
func startServer(name, logFile string, env []string, argv ...string) (*server, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		f.Close()
		close(s.done)
	}()
	if err := reg.addServer(s); err != nil {
		return nil, err
	}
	return s, nil
}

// waitBanner waits until addr answers with an SSH banner, or the server exits.
func (s *server) waitBanner(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if !s.alive() {
			return fmt.Errorf("%s exited (%v):\n%s", s.name, s.err, tail(s.log, 20))
		}
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.SetDeadline(time.Now().Add(3 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil && strings.HasPrefix(line, "SSH-2.0-") {
				return nil
			}
			err = fmt.Errorf("banner %q: %v", line, rerr)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready on %s after %s: %v\n%s", s.name, addr, timeout, last, tail(s.log, 20))
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// tail returns the last n lines of a file.
func tail(file string, n int) string {
	data, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort asks the kernel for a free 127.0.0.1 port. It can be taken again
// before the caller listens on it; callers retry.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run runs a short command and returns its stdout, failing with its output.
func run(ctx context.Context, env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = env
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %v\n%s%s", strings.Join(argv, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// keygen makes an unencrypted ed25519 key pair at dir/name(.pub).
func keygen(ctx context.Context, dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if _, err := run(ctx, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", p); err != nil {
		return "", err
	}
	return p, nil
}

// /proc readers.

// clkTck is USER_HZ: 100 on every Linux architecture Go supports for amd64
// and arm64 (checked against getconf CLK_TCK when the bench starts).
var clkTck = 100.0

// cpuSeconds is utime+stime of pid.
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is state (field 3); utime is field 14
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clkTck
}

// statusKiB reads a "Key:   N kB" line of /proc/PID/status (e.g. VmRSS).
func statusKiB(pid int, key string) int64 {
	return kbField(fmt.Sprintf("/proc/%d/status", pid), key)
}

// pssKiB is the proportional set size of pid (shared pages split between
// the processes sharing them), from smaps_rollup.
func pssKiB(pid int) int64 {
	return kbField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss")
}

func kbField(file, key string) int64 {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// comm is the process's command name.
func comm(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(data))
}
