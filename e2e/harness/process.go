package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Process is a long-lived program (an sshd, a gate) started in its own
// process group. Stop ends the group and every process descended from it:
// sshd's per-connection children call setsid and leave the group.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	done chan struct{}
	err  error // from Wait, valid once done is closed
}

// StartProcess runs argv with env (nil: this process's environment) in its
// own process group, its stdout and stderr going to out.
func StartProcess(name string, out io.Writer, env []string, argv ...string) (*Process, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process's id (and its process group's).
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process exited (Wait's error); valid once Done is closed.
func (p *Process) Err() error { return p.err }

// Alive reports whether the process has not exited yet.
func (p *Process) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Terminate sends SIGTERM to the process group and waits up to timeout for
// the process to exit by itself; it reports whether it did.
func (p *Process) Terminate(timeout time.Duration) bool {
	if !p.Alive() {
		return true
	}
	syscall.Kill(-p.PID(), syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Stop ends the process: SIGTERM to its group and up to grace to exit (none
// when grace is 0), then SIGKILL to the group and to every descendant, and
// waits until the process and its descendants are gone (descendants for up
// to 10 s). It reports whether the process exited within grace (true when it
// had exited already).
func (p *Process) Stop(grace time.Duration) (graceful bool) {
	if !p.Alive() {
		syscall.Kill(-p.PID(), syscall.SIGKILL) // what is left of its group
		return true
	}
	kids := Descendants(p.PID())
	if grace > 0 {
		graceful = p.Terminate(grace)
	}
	if p.Alive() {
		kids = append(kids, Descendants(p.PID())...)
	}
	syscall.Kill(-p.PID(), syscall.SIGKILL)
	for _, k := range kids {
		syscall.Kill(k, syscall.SIGKILL)
	}
	<-p.done
	Eventually(10*time.Second, func() bool {
		for _, k := range kids {
			if processAlive(k) {
				return false
			}
		}
		return true
	})
	return graceful
}

// WaitBanner polls until addr answers with an SSH-2.0 banner, failing early
// when alive (if not nil) says the server has exited.
func WaitBanner(addr string, timeout time.Duration, alive func() bool) error {
	var lastErr error
	ok := Eventually(timeout, func() bool {
		if alive != nil && !alive() {
			lastErr = errors.New("exited before it answered")
			return true
		}
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			lastErr = err
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
			lastErr = fmt.Errorf("banner %q: %v", line, err)
			return false
		}
		lastErr = nil
		return true
	})
	if !ok {
		return fmt.Errorf("%s gave no SSH banner within %s: %v", addr, timeout, lastErr)
	}
	return lastErr
}
