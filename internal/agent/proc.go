package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
)

const (
	sigHUP  = syscall.SIGHUP
	sigKILL = syscall.SIGKILL
)

// exitInfo is how a process ended.
type exitInfo struct {
	code   int            // exit status, when signal is 0
	signal syscall.Signal // the signal that killed it, or 0
	core   bool
}

func exitFromStatus(ws syscall.WaitStatus) exitInfo {
	if ws.Signaled() {
		return exitInfo{signal: ws.Signal(), core: ws.CoreDump()}
	}
	return exitInfo{code: ws.ExitStatus()}
}

// procStarter starts processes and waits for them. Without reaping it uses
// os.Process.Wait. With reaping, one goroutine waits for any child
// (wait4(-1)) on SIGCHLD and hands statuses of our own processes to their
// waiters; orphans reparented to the agent are reaped and forgotten.
type procStarter struct {
	reap bool

	mu      sync.Mutex // held across Start+register and across wait4+dispatch
	waiters map[int]chan exitInfo
}

func newProcStarter(reap bool) (*procStarter, error) {
	p := &procStarter{reap: reap, waiters: map[int]chan exitInfo{}}
	if !reap {
		return p, nil
	}
	if os.Getpid() != 1 {
		// PR_SET_CHILD_SUBREAPER: orphans of our sessions come to us, as
		// they would to init.
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, 36, 1, 0); e != 0 {
			return nil, fmt.Errorf("become child subreaper: %w", e)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		for range sigs {
			p.reapAll()
		}
	}()
	return p, nil
}

func (p *procStarter) reapAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ws.Stopped() || ws.Continued() {
			continue
		}
		if ch, ok := p.waiters[pid]; ok {
			delete(p.waiters, pid)
			ch <- exitFromStatus(ws)
		}
	}
}

// start starts cmd, whose Stdin, Stdout and Stderr must be *os.File or nil
// (so that exec.Cmd starts no copying goroutines of its own), and returns a
// function that waits for it to end.
func (p *procStarter) start(cmd *exec.Cmd) (wait func() exitInfo, err error) {
	if !p.reap {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		proc := cmd.Process
		return func() exitInfo {
			st, err := proc.Wait()
			if err != nil {
				return exitInfo{code: 255}
			}
			return exitFromStatus(st.Sys().(syscall.WaitStatus))
		}, nil
	}
	p.mu.Lock()
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	ch := make(chan exitInfo, 1)
	p.waiters[cmd.Process.Pid] = ch
	p.mu.Unlock()
	// The reaper may have missed a SIGCHLD that came while we held the
	// lock; it coalesces, so look once more.
	go p.reapAll()
	proc := cmd.Process
	return func() exitInfo {
		e := <-ch
		_ = proc.Release()
		return e
	}, nil
}
