package harness

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ProcStats are what /proc shows of a process's resources.
type ProcStats struct {
	FDs     int // open file descriptors
	Sockets int // of which sockets
	Store   int // of which files under the data directory (the store's connection pool)
	Threads int // OS threads (Go keeps them once made: informative only)
}

// Leakable is what a leak check compares: every fd but the store's pooled
// database files, which database/sql keeps open by design.
func (p ProcStats) Leakable() int { return p.FDs - p.Store }

func (p ProcStats) String() string {
	return fmt.Sprintf("%d fds (%d sockets, %d store files), %d threads", p.FDs, p.Sockets, p.Store, p.Threads)
}

// Stats reads /proc/PID/fd and /proc/PID/status.
func Stats(pid int) (ProcStats, error) { return statsUnder(pid, "") }

// statsUnder is Stats counting fds to files under dataDir as Store.
func statsUnder(pid int, dataDir string) (ProcStats, error) {
	var st ProcStats
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return st, err
	}
	st.FDs = len(ents)
	for _, e := range ents {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(target, "socket:"):
			st.Sockets++
		case dataDir != "" && strings.HasPrefix(target, dataDir+"/"):
			st.Store++
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			st.Threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return st, nil
}

// Stats returns the gate process's fd and thread counts.
func (g *Gate) Stats(t testing.TB) ProcStats {
	t.Helper()
	st, err := statsUnder(g.PID(), g.DataDir)
	if err != nil {
		t.Fatalf("gate stats: %v", err)
	}
	return st
}

// FDList names the gate's open fds (for a failure message).
func FDList(pid int) string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink(dir + "/" + e.Name())
		fmt.Fprintf(&b, "  %s -> %s\n", e.Name(), target)
	}
	return b.String()
}

// WaitBaseline polls until the gate's open fds (but the store's pooled
// database files) are back to at most base's plus slack, failing the test
// with the fd list if they are not within timeout.
func (g *Gate) WaitBaseline(t testing.TB, base ProcStats, slack int, timeout time.Duration) ProcStats {
	t.Helper()
	var last ProcStats
	ok := Eventually(timeout, func() bool {
		st, err := statsUnder(g.PID(), g.DataDir)
		if err != nil {
			return false
		}
		last = st
		return st.Leakable() <= base.Leakable()+slack
	})
	if !ok {
		t.Errorf("gate fds did not return to baseline within %s: baseline %s, now %s\nopen fds:\n%s",
			timeout, base, last, FDList(g.PID()))
	} else {
		t.Logf("gate resources: baseline %s, after %s", base, last)
	}
	return last
}

// Descendants lists the pids of every process below pid.
func Descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := statFields(p)
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie is as good as gone.
	if f := statFields(pid); len(f) > 0 {
		return f[0] != "Z"
	}
	return false
}

// statFields are the fields of /proc/PID/stat after the command name (which
// may hold spaces and parentheses): state, ppid, ..., utime at 11, stime at
// 12. Nil when the process is gone.
func statFields(pid int) []string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

var (
	clkTckOnce sync.Once
	clkTck     = 100.0 // USER_HZ on every Linux architecture Go supports; getconf confirms it
)

// CPUSeconds is the user+system CPU time of pid so far (0 when it is gone).
func CPUSeconds(pid int) float64 {
	clkTckOnce.Do(func() {
		if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
			if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
				clkTck = v
			}
		}
	})
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clkTck
}

// StatusKiB reads a "Key:   N kB" line of /proc/PID/status (e.g. VmRSS).
func StatusKiB(pid int, key string) int64 {
	return kbField(fmt.Sprintf("/proc/%d/status", pid), key)
}

// PSSKiB is the proportional set size of pid (shared pages split between
// the processes sharing them), from smaps_rollup.
func PSSKiB(pid int) int64 {
	return kbField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss")
}

func kbField(file, key string) int64 {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// Comm is the process's command name ("" when it is gone).
func Comm(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(data))
}

// WaitNoProcess polls until no process's command line contains pattern
// (a bounded pgrep -f), and reports whether that happened within timeout.
func WaitNoProcess(pattern string, timeout time.Duration) bool {
	return Eventually(timeout, func() bool { return len(FindProcesses(pattern)) == 0 })
}

// FindProcesses returns the pids whose command line contains pattern.
func FindProcesses(pattern string) []int {
	var out []int
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == self {
			continue
		}
		if cl := cmdline(p); cl != "" && strings.Contains(cl, pattern) && processAlive(p) {
			out = append(out, p)
		}
	}
	return out
}

// cmdline is the process's command line, its arguments joined by spaces (""
// when it is gone or a kernel thread).
func cmdline(pid int) string {
	cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(cl), "\x00", " ")
}
