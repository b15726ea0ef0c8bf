package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
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
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
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
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z'
	}
	return true
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
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(cl) == 0 {
			continue
		}
		if strings.Contains(strings.ReplaceAll(string(cl), "\x00", " "), pattern) && processAlive(p) {
			out = append(out, p)
		}
	}
	return out
}
