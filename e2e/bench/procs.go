package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// server is a long-lived process the bench started (sshd or a gate), with
// its output in a log file.
type server struct {
	*harness.Process
	log string // file holding its stdout and stderr
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
		s.Stop(killGrace)
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
		servers[i].Stop(killGrace)
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

// killGrace is how long a stopped server has after SIGTERM (a gate exits
// cleanly) before it and its descendants are killed.
const killGrace = 3 * time.Second

// startServer runs argv in its own process group with output to logFile.
func startServer(name, logFile string, env []string, argv ...string) (*server, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	p, err := harness.StartProcess(name, f, env, argv...)
	if err != nil {
		f.Close()
		return nil, err
	}
	go func() {
		<-p.Done()
		f.Close()
	}()
	s := &server{Process: p, log: logFile}
	if err := reg.addServer(s); err != nil {
		return nil, err
	}
	return s, nil
}

// waitBanner waits until addr answers with an SSH banner, or the server exits.
func (s *server) waitBanner(addr string, timeout time.Duration) error {
	if err := harness.WaitBanner(addr, timeout, s.Alive); err != nil {
		if !s.Alive() {
			return fmt.Errorf("%s exited (%v):\n%s", s.Name, s.Err(), tail(s.log, 20))
		}
		return fmt.Errorf("%s: %v\n%s", s.Name, err, tail(s.log, 20))
	}
	return nil
}

// tail returns the last n lines of a file.
func tail(file string, n int) string {
	data, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run runs a short command and returns its stdout, failing with its output.
func run(ctx context.Context, env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	r := harness.Run(cmd, nil, 2*time.Minute)
	if r.Err != nil || r.Code != 0 {
		return r.Stdout, fmt.Errorf("%s: exit %d %v\n%s%s", strings.Join(argv, " "), r.Code, r.Err, r.Stdout, r.Stderr)
	}
	return r.Stdout, nil
}
