package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sshgate/sshgate/e2e/harness"
)

// The kube throughput rows' CPU accounting: where the CPU of one transfer
// goes, process by process, along each path (the client, the gate, the
// cluster's API server, kubelet, containerd and its shims, and what runs in
// the pod's container), read from /proc and the container's cpuacct cgroup.

// cpuParts are the columns of the per-process table, in order.
var cpuParts = []string{"client", "gate", "kube-apiserver", "kubelet", "containerd", "shims", "agent", "wc", "all"}

// cpuMeter measures one transfer.
type cpuMeter struct {
	state   string
	gatePID int
	cgroup  string // the container's cpuacct directory
	fixed   map[string][]int
	start   map[string]float64
	cg0     float64
	busy0   [2]float64 // busy, total jiffies of /proc/stat
	t0      time.Time
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	agents  map[string][2]float64 // pid/starttime -> first, last CPU seconds
}

// procsByComm lists the pids whose comm is comm and whose command line
// contains want (when not empty).
func procsByComm(comm, want string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		c, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		if want != "" {
			cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if !strings.Contains(string(cl), want) {
				continue
			}
		}
		out = append(out, pid)
	}
	return out
}

// containerCgroup finds the cpuacct directory of pod's main container.
func (k *kubeBench) containerCgroup(ctx context.Context, pod string) (string, error) {
	p, err := k.cs.CoreV1().Pods(k.ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	id := ""
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "main" {
			_, id, _ = strings.Cut(cs.ContainerID, "://")
		}
	}
	if id == "" {
		return "", fmt.Errorf("pod %s: no main container id", pod)
	}
	found := ""
	root := "/sys/fs/cgroup/cpuacct"
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.Count(strings.TrimPrefix(path, root), "/") > 4 {
			return filepath.SkipDir
		}
		if strings.Contains(d.Name(), id) {
			found = path
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		return "", fmt.Errorf("pod %s: no cpuacct cgroup for container %s", pod, id)
	}
	return found, nil
}

func cgroupSeconds(dir string) float64 {
	b, _ := os.ReadFile(filepath.Join(dir, "cpuacct.usage"))
	v, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	return v / 1e9
}

func procStatBusy() [2]float64 {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var total, idle float64
	for i, s := range f[1:] {
		v, _ := strconv.ParseFloat(s, 64)
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return [2]float64{total - idle, total}
}

// startCPU begins measuring a transfer into the container whose cgroup is
// cg, through the gate gatePID (0: none).
func startCPU(state string, gatePID int, cg string) *cpuMeter {
	m := &cpuMeter{state: state, gatePID: gatePID, cgroup: cg, fixed: map[string][]int{},
		start: map[string]float64{}, agents: map[string][2]float64{}, stop: make(chan struct{}), done: make(chan struct{})}
	m.fixed["kube-apiserver"] = procsByComm("kube-apiserver", "")
	m.fixed["kubelet"] = procsByComm("kubelet", "")
	m.fixed["containerd"] = procsByComm("containerd", state)
	m.fixed["shims"] = procsByComm("containerd-shim", "k8s.io")
	if gatePID > 0 {
		m.fixed["gate"] = []int{gatePID}
	}
	for name, pids := range m.fixed {
		for _, p := range pids {
			m.start[name] += harness.CPUSeconds(p)
		}
	}
	m.cg0 = cgroupSeconds(cg)
	m.sampleAgents(true)
	m.busy0 = procStatBusy()
	m.t0 = time.Now()
	go func() {
		defer close(m.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.sampleAgents(false)
			}
		}
	}()
	return m
}

// sampleAgents records the CPU of every sshgate-agent in the container
// (the mux agent lives on; a --stdio one exits with its connection, so
// what it used in its last 50 ms may be missed).
func (m *cpuMeter) sampleAgents(first bool) {
	b, _ := os.ReadFile(filepath.Join(m.cgroup, "cgroup.procs"))
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(s)
		c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(c)) != "sshgate-agent" {
			continue
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		f := strings.Fields(string(st))
		if len(f) < 22 {
			continue
		}
		key := s + "/" + f[21]
		v := harness.CPUSeconds(pid)
		if v == 0 {
			continue
		}
		e, ok := m.agents[key]
		if !ok {
			e[0] = 0
			if first {
				e[0] = v
			}
		}
		e[1] = v
		m.agents[key] = e
	}
}

// end stops the meter and returns each part's CPU seconds, the client's
// (clientCPU, from its rusage) included, and the machine's busy share of
// its cores over the transfer.
func (m *cpuMeter) end(clientCPU float64) (map[string]float64, float64) {
	m.sampleAgents(false)
	close(m.stop)
	<-m.done
	busy := procStatBusy()
	out := map[string]float64{"client": clientCPU}
	for name, pids := range m.fixed {
		v := 0.0
		for _, p := range pids {
			v += harness.CPUSeconds(p)
		}
		out[name] = v - m.start[name]
	}
	for _, e := range m.agents {
		out["agent"] += e[1] - e[0]
	}
	out["wc"] = max(0, cgroupSeconds(m.cgroup)-m.cg0-out["agent"])
	for _, p := range cpuParts[:len(cpuParts)-1] {
		out["all"] += out[p]
	}
	share := 0.0
	if d := busy[1] - m.busy0[1]; d > 0 {
		share = (busy[0] - m.busy0[0]) / d
	}
	return out, share
}

// cpuTable accumulates per-GiB CPU of one path over its transfers.
type cpuTable struct {
	sum  map[string]float64
	busy float64
	n    int
}

func (c *cpuTable) add(parts map[string]float64, busy, gib float64) {
	if c.sum == nil {
		c.sum = map[string]float64{}
	}
	for k, v := range parts {
		c.sum[k] += v / gib
	}
	c.busy += busy
	c.n++
}

func (c *cpuTable) cells() []string {
	var out []string
	for _, p := range cpuParts {
		out = append(out, fmt.Sprintf("%.2f", c.sum[p]/float64(max(c.n, 1))))
	}
	return append(out, fmt.Sprintf("%.0f%%", 100*c.busy/float64(max(c.n, 1))))
}

// rttProbe is a second connection to a per-user pod (over the same --mux
// exec stream when mux is on) running `cat`, echoing one byte every 200 ms
// while a transfer runs: the round trip through the stream's queues that
// the transfer's SSH window (2 MiB, x/crypto's) waits on.
type rttProbe struct {
	cmd  *exec.Cmd
	stop chan struct{}
	done chan struct{}
	rtts []time.Duration
}

func startRTTProbe(ctx context.Context, e *endpoint) (*rttProbe, error) {
	cmd := e.ssh(ctx, nil, "cat")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &rttProbe{cmd: cmd, stop: make(chan struct{}), done: make(chan struct{})}
	// The first echo is the connection's setup; it is not counted.
	buf := make([]byte, 1)
	if _, err := in.Write([]byte{'x'}); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(out, buf); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("rtt probe: %w", err)
	}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			t0 := time.Now()
			if _, err := in.Write([]byte{'x'}); err != nil {
				return
			}
			if _, err := io.ReadFull(out, buf); err != nil {
				return
			}
			p.rtts = append(p.rtts, time.Since(t0))
		}
	}()
	go func() {
		<-p.stop
		in.Close()
	}()
	return p, nil
}

// end stops the probe and returns its round trips.
func (p *rttProbe) end() []time.Duration {
	close(p.stop)
	<-p.done
	p.cmd.Wait()
	return p.rtts
}
