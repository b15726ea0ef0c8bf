package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A degraded network for a test: a network namespace of its own, joined to
// this one by a veth pair on a private /30 (10.201.N.0/30: .1 here, .2
// inside), with a rate limit (tbf on both ends) and random loss (iptables
// statistic in the namespace) on the link. This kernel has no sch_netem
// (`tc qdisc add ... netem` answers "Specified qdisc kind is unknown"), so
// latency is a userspace delay line in front of the namespace (DelayLine).

// NetNS is a network namespace made by a test; it is deleted in t.Cleanup
// (which also removes the veth pair and everything running inside is
// stopped first by its own cleanups).
type NetNS struct {
	Name    string
	OuterIP string // this side of the veth pair
	InnerIP string // the namespace's side
	veth    string
}

// Shaping is what the link does to traffic: RateMbit caps each direction
// (0: no cap), LossPct drops that percentage of packets entering the
// namespace and leaving it (0: none).
type Shaping struct {
	RateMbit int
	LossPct  float64
}

var netnsSeq atomic.Int32

// NewNetNS creates a namespace and its veth pair with shaping applied. It
// skips the test where the machine cannot (not root, no `ip`).
func NewNetNS(t testing.TB, sh Shaping) *NetNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a network namespace needs root")
	}
	RequireTools(t, "ip", "tc", "iptables")
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		k := int(netnsSeq.Add(1))
		n := (os.Getpid()*7+k*13)%250 + 1
		ns := &NetNS{
			Name:    fmt.Sprintf("sgdeg-%d-%d", os.Getpid(), k),
			OuterIP: fmt.Sprintf("10.201.%d.1", n),
			InnerIP: fmt.Sprintf("10.201.%d.2", n),
			veth:    fmt.Sprintf("sgd%d%d", os.Getpid()%100000, k),
		}
		if lastErr = ns.create(n, sh); lastErr == nil {
			t.Cleanup(ns.Delete)
			return ns
		}
		ns.Delete()
	}
	t.Fatalf("network namespace: %v", lastErr)
	return nil
}

func (ns *NetNS) create(n int, sh Shaping) error {
	// The /30 must not be in use by another test's pair.
	if out, _ := exec.Command("ip", "-4", "-o", "addr", "show").Output(); strings.Contains(string(out), ns.OuterIP+"/") {
		return fmt.Errorf("10.201.%d.0/30 in use", n)
	}
	in := ns.veth + "i"
	steps := [][]string{
		{"ip", "netns", "add", ns.Name},
		{"ip", "link", "add", ns.veth, "type", "veth", "peer", "name", in},
		{"ip", "link", "set", in, "netns", ns.Name},
		{"ip", "addr", "add", ns.OuterIP + "/30", "dev", ns.veth},
		{"ip", "link", "set", ns.veth, "up"},
		{"ip", "netns", "exec", ns.Name, "ip", "addr", "add", ns.InnerIP + "/30", "dev", in},
		{"ip", "netns", "exec", ns.Name, "ip", "link", "set", in, "up"},
		{"ip", "netns", "exec", ns.Name, "ip", "link", "set", "lo", "up"},
	}
	if sh.RateMbit > 0 {
		rate := fmt.Sprintf("%dmbit", sh.RateMbit)
		// burst: at least rate/HZ; a generous one keeps tbf from being the
		// CPU's bottleneck, latency: the queue a burst may wait in.
		tbf := []string{"tbf", "rate", rate, "burst", "256kb", "latency", "200ms"}
		steps = append(steps,
			append([]string{"tc", "qdisc", "add", "dev", ns.veth, "root"}, tbf...),
			append([]string{"ip", "netns", "exec", ns.Name, "tc", "qdisc", "add", "dev", in, "root"}, tbf...))
	}
	if sh.LossPct > 0 {
		p := fmt.Sprintf("%.4f", sh.LossPct/100)
		for _, chain := range []string{"INPUT", "OUTPUT"} {
			steps = append(steps, []string{"ip", "netns", "exec", ns.Name, "iptables", "-w", "-A", chain,
				"-m", "statistic", "--mode", "random", "--probability", p, "-j", "DROP"})
		}
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// Exec is the argv prefix that runs a command inside the namespace.
func (ns *NetNS) Exec() []string { return []string{"ip", "netns", "exec", ns.Name} }

// Delete removes the namespace and the veth pair (deleting one end of a
// pair deletes both). It is safe to call twice.
func (ns *NetNS) Delete() {
	exec.Command("ip", "link", "del", ns.veth).Run()
	exec.Command("ip", "netns", "del", ns.Name).Run()
}

// Servers written in Go (an auth webhook) run in the test process and are
// put behind a DelayLine; real daemons (sshd) run inside the namespace.

// DelayLine is a TCP proxy on 127.0.0.1 that holds every byte for Delay in
// each direction before passing it on (so a round trip gains 2*Delay), with
// at most MaxBuffered bytes in flight per direction (then it stops reading
// and TCP's own flow control pushes back on the sender).
type DelayLine struct {
	Addr  string // listen here
	ln    net.Listener
	to    string
	delay atomic.Int64 // time.Duration
	max   int64
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

// DefaultDelayBuffer is enough that a bandwidth-delay product at 100 ms of
// round trip and 1 Gbit/s is not limited by the line.
const DefaultDelayBuffer = 64 << 20

// NewDelayLine proxies 127.0.0.1:free to target with delay per direction.
// It is closed, with its connections, in t.Cleanup.
func NewDelayLine(t testing.TB, target string, delay time.Duration) *DelayLine {
	t.Helper()
	d, err := StartDelayLine(target, delay, DefaultDelayBuffer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// StartDelayLine is NewDelayLine without a test (for the bench).
func StartDelayLine(target string, delay time.Duration, maxBuffered int64) (*DelayLine, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &DelayLine{Addr: ln.Addr().String(), ln: ln, to: target, max: maxBuffered, conns: map[net.Conn]struct{}{}}
	d.SetDelay(delay)
	d.wg.Add(1)
	go d.accept()
	return d, nil
}

func (d *DelayLine) track(c net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		c.Close()
		return false
	}
	d.conns[c] = struct{}{}
	return true
}

func (d *DelayLine) accept() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		if !d.track(c) {
			continue
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			u, err := net.DialTimeout("tcp", d.to, 10*time.Second)
			if err != nil || !d.track(u) {
				c.Close()
				return
			}
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); d.pipe(u, c) }()
			go func() { defer wg.Done(); d.pipe(c, u) }()
			wg.Wait()
			c.Close()
			u.Close()
			d.mu.Lock()
			delete(d.conns, c)
			delete(d.conns, u)
			d.mu.Unlock()
		}()
	}
}

type delayed struct {
	at   time.Time
	data []byte
	eof  bool
}

// pipe copies src to dst, each chunk released Delay after it was read.
func (d *DelayLine) pipe(dst, src net.Conn) {
	q := make(chan delayed, 1<<16)
	var inFlight atomic.Int64
	var room = make(chan struct{}, 1)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 64<<10)
			n, err := src.Read(buf)
			if n > 0 {
				for inFlight.Load()+int64(n) > d.max {
					<-room
				}
				inFlight.Add(int64(n))
				q <- delayed{at: time.Now().Add(time.Duration(d.delay.Load())), data: buf[:n]}
			}
			if err != nil {
				q <- delayed{at: time.Now().Add(time.Duration(d.delay.Load())), eof: true}
				return
			}
		}
	}()
	broken := false
	for it := range q {
		if w := time.Until(it.at); w > 0 {
			time.Sleep(w)
		}
		if it.eof {
			if tc, ok := dst.(*net.TCPConn); ok && !broken {
				tc.CloseWrite()
			}
			continue
		}
		if !broken {
			if _, err := dst.Write(it.data); err != nil {
				broken = true
				src.Close() // stop the reader; the peer sees a reset
			}
		}
		inFlight.Add(-int64(len(it.data)))
		select {
		case room <- struct{}{}:
		default:
		}
	}
}

// SetDelay changes the delay per direction for bytes read from now on.
func (d *DelayLine) SetDelay(delay time.Duration) { d.delay.Store(int64(delay)) }

// Close stops the line and cuts its connections.
func (d *DelayLine) Close() {
	d.mu.Lock()
	d.done = true
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.ln.Close()
	d.wg.Wait()
}
