package e2e_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/e2e/harness"
)

// Abuse of the connection protocol by an authenticated client, against the
// built gate and a real sshd. The counts are the CI ones; SSHGATE_E2E_FULL=1
// runs the full ones (README "The end-to-end suite").

// fullRun says SSHGATE_E2E_FULL=1: the heavy counts of the abuse and fault
// tests.
var fullRun = os.Getenv("SSHGATE_E2E_FULL") == "1"

// count is ci, or full under SSHGATE_E2E_FULL=1.
func count(ci, full int) int {
	if fullRun {
		return full
	}
	return ci
}

// abuseWorld is the world with forwarding granted, the gate's pprof
// endpoint on, bob (web-1 too) as the bystander, and an echo server.
type abuseWorld struct {
	*world
	pprof string
	bob   *harness.Client
	echo  string // 127.0.0.1:PORT of the echo server
}

func newAbuseWorld(t *testing.T) *abuseWorld {
	t.Helper()
	gateOnly(t)
	env, pprof := harness.PProfEnv(t)
	w := newWorld(t, worldOptions{forwarding: true, gate: harness.GateOptions{Env: []string{env}}})
	bob := w.gate.AddUser(t, "bob")
	w.gate.Admin(t, "grant", "bob", "--target", "web-1", "--login", "root")
	return &abuseWorld{world: w, pprof: pprof, bob: bob, echo: "127.0.0.1:" + strconv.Itoa(echoServer(t))}
}

func (w *abuseWorld) goroutines(t *testing.T) (int, string) {
	t.Helper()
	n, dump, err := harness.Goroutines(w.pprof)
	if err != nil {
		t.Fatalf("gate goroutines: %v", err)
	}
	return n, dump
}

func (w *abuseWorld) rssMiB() float64 { return float64(harness.RSSKiB(w.gate.PID())) / 1024 }

// heapMiB is the gate's live heap after a collection.
func (w *abuseWorld) heapMiB(t *testing.T) float64 {
	t.Helper()
	n, err := harness.HeapAlloc(w.pprof)
	if err != nil {
		t.Fatalf("gate heap: %v", err)
	}
	return float64(n) / (1 << 20)
}

// baseline warms the gate up (a session, a forward, the account side) and
// returns its fds, goroutines and RSS.
func (w *abuseWorld) baseline(t *testing.T) (harness.ProcStats, int, float64) {
	t.Helper()
	harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
	harness.MustRun(t, w.bob.SSHTo("", nil, "ls"), nil, short)
	cl := w.alice.XDial(t, "web-1")
	if c, err := cl.Dial("tcp", w.echo); err == nil {
		c.Close()
	}
	cl.Close()
	fds := w.gate.WaitBaseline(t, w.gate.Stats(t), 0, time.Second)
	var gor int
	harness.Eventually(short, func() bool {
		n, _ := w.goroutines(t)
		if n == gor {
			return true
		}
		gor = n
		return false
	})
	return fds, gor, w.rssMiB()
}

// bystander runs bob's `ssh bob+web-1 echo ok` in a loop until stop; it
// reports how many worked, and the first failure.
type bystander struct {
	ok, failed atomic.Int64
	first      atomic.Pointer[string]
	stop, done chan struct{}
}

func startBystander(t *testing.T, c *harness.Client) *bystander {
	b := &bystander{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for {
			select {
			case <-b.stop:
				return
			default:
			}
			r := harness.Run(c.SSHTo("web-1", nil, "echo ok"), nil, short)
			if r.Code == 0 && r.Stdout == "ok\n" {
				b.ok.Add(1)
				continue
			}
			b.failed.Add(1)
			msg := fmt.Sprintf("exit %d stdout %q stderr %q (%v)", r.Code, r.Stdout, r.Stderr, r.Err)
			b.first.CompareAndSwap(nil, &msg)
		}
	}()
	t.Cleanup(b.end)
	return b
}

func (b *bystander) end() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
}

// check stops the bystander and fails the test if a login of it failed.
func (b *bystander) check(t *testing.T, during string) {
	t.Helper()
	b.end()
	t.Logf("bystander during %s: %d sessions ok, %d failed", during, b.ok.Load(), b.failed.Load())
	if b.failed.Load() > 0 {
		t.Errorf("bob's sessions failed during %s: %s", during, *b.first.Load())
	}
	if b.ok.Load() == 0 {
		t.Errorf("bob had no session during %s", during)
	}
}

// afterAbuse checks that the gate's fds and goroutines return to baseline.
func (w *abuseWorld) afterAbuse(t *testing.T, fds harness.ProcStats, gor int) {
	t.Helper()
	w.gate.WaitBaseline(t, fds, 2, short)
	var n int
	var dump string
	if !harness.Eventually(short, func() bool { n, dump = w.goroutines(t); return n <= gor+2 }) {
		t.Errorf("gate goroutines: %d, baseline %d:\n%s", n, gor, dump)
	} else {
		t.Logf("gate goroutines: baseline %d, after %d", gor, n)
	}
	// The gate still serves.
	harness.MustRun(t, w.alice.SSHTo("web-1", nil, "true"), nil, short)
}

// 100k (CI: 20k) channel opens refused: unknown channel types (refused in
// the channel's goroutine) and session channels over limits.max_sessions
// (refused in the connection's loop), from 4 connections at once, each
// holding its 10 sessions. The gate's RSS does not grow with the count,
// fds and goroutines return to baseline, bob keeps working.
func TestAbuseRejectedChannelOpens(t *testing.T) {
	t.Parallel()
	w := newAbuseWorld(t)
	fds, gor, rss0 := w.baseline(t)
	by := startBystander(t, w.bob)

	const conns, workers = 4, 16
	total := count(20000, 100000)
	var clients []*ssh.Client
	for i := 0; i < conns; i++ {
		cl := w.alice.XDial(t, "web-1")
		clients = append(clients, cl)
		for j := 0; j < 10; j++ { // limits.max_sessions: the 11th is refused
			ch, reqs, err := cl.OpenChannel("session", nil)
			if err != nil {
				t.Fatalf("session %d on connection %d: %v", j, i, err)
			}
			go ssh.DiscardRequests(reqs)
			defer ch.Close()
		}
	}
	var done, wrong atomic.Int64
	var firstWrong atomic.Pointer[string]
	var rssQuarter, heapQuarter atomic.Int64
	heap0 := w.heapMiB(t)
	start := time.Now()
	var wg sync.WaitGroup
	for _, cl := range clients {
		for k := 0; k < workers; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					n := done.Add(1)
					if n > int64(total) {
						return
					}
					if n == int64(total/4) {
						rssQuarter.Store(harness.RSSKiB(w.gate.PID()))
						if h, err := harness.HeapAlloc(w.pprof); err == nil {
							heapQuarter.Store(h)
						}
					}
					typ, want := "x-abuse@example.com", ssh.UnknownChannelType
					if i%2 == 1 {
						typ, want = "session", ssh.ResourceShortage
					}
					ch, _, err := cl.OpenChannel(typ, nil)
					var oe *ssh.OpenChannelError
					if !errors.As(err, &oe) || oe.Reason != want {
						if ch != nil {
							ch.Close()
						}
						wrong.Add(1)
						msg := fmt.Sprintf("%s: %v, want refused with %v", typ, err, want)
						firstWrong.CompareAndSwap(nil, &msg)
						if err != nil && oe == nil {
							return // the connection is gone
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	took := time.Since(start)
	rssEnd, heapEnd := w.rssMiB(), w.heapMiB(t)
	rssQ, heapQ := float64(rssQuarter.Load())/1024, float64(heapQuarter.Load())/(1<<20)
	t.Logf("%d channel opens refused in %s (%.0f/s) over %d connections; gate live heap: baseline %.1f MiB, after 1/4 %.1f MiB, after all %.1f MiB; RSS %.1f, %.1f, %.1f MiB",
		total, took.Round(time.Millisecond), float64(total)/took.Seconds(), conns, heap0, heapQ, heapEnd, rss0, rssQ, rssEnd)
	if wrong.Load() > 0 {
		t.Errorf("%d opens not refused as they should be; first: %s", wrong.Load(), *firstWrong.Load())
	}
	// Bounded: the last three quarters of the opens add nothing the gate keeps.
	if heapEnd-heapQ > 8 {
		t.Errorf("gate live heap grew %.1f MiB over the last 3/4 of the refused opens", heapEnd-heapQ)
	}
	by.check(t, "the refused opens")
	for _, cl := range clients {
		cl.Close()
	}
	w.afterAbuse(t, fds, gor)
}

// Env requests before the session starts are kept to be replayed to the
// target: the gate keeps at most 128 (as OpenSSH's sshd), so a flood of
// 4 KiB values (20k, 80 MiB; full: 100k, 400 MiB) costs it nothing, and the
// session still runs.
func TestAbuseEnvFlood(t *testing.T) {
	t.Parallel()
	w := newAbuseWorld(t)
	fds, gor, rss0 := w.baseline(t)
	cl := w.alice.XDial(t, "web-1")
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	heap0 := w.heapMiB(t)
	n := count(20000, 100000)
	value := strings.Repeat("x", 4000)
	start := time.Now()
	for i := 0; i < n; i++ {
		payload := ssh.Marshal(struct{ Name, Value string }{"LC_ABUSE" + strconv.Itoa(i), value})
		if _, err := sess.SendRequest("env", false, payload); err != nil {
			t.Fatalf("env %d: %v", i, err)
		}
	}
	// A request with a reply comes after every one before it: the gate has
	// read them all. It is refused: the 128 kept are used up.
	ok, err := sess.SendRequest("env", true, ssh.Marshal(struct{ Name, Value string }{"LC_LAST", "1"}))
	took := time.Since(start)
	rss, heap := w.rssMiB(), w.heapMiB(t)
	t.Logf("%d env requests of 4 KiB (%d MiB) in %s; gate live heap %.1f -> %.1f MiB, RSS %.1f -> %.1f MiB",
		n, n*4000>>20, took.Round(time.Millisecond), heap0, heap, rss0, rss)
	if err != nil || ok {
		t.Errorf("env request past the cap: ok %v err %v, want refused", ok, err)
	}
	if heap-heap0 > 8 {
		t.Errorf("gate live heap grew %.1f MiB with the env flood", heap-heap0)
	}
	// The session runs, with the first of the env values.
	out, err := sess.CombinedOutput("echo ${#LC_ABUSE0} $LC_ABUSE200.")
	if err != nil || string(out) != "4000 .\n" {
		t.Errorf("session after the flood: %q %v, want %q", out, err, "4000 .\n")
	}
	cl.Close()
	w.afterAbuse(t, fds, gor)
}

// A client that sends global requests (remote forwarding, which goes to the
// target) without waiting for the replies: the gate answers them one at a
// time, in order, keeping at most 16 waiting and refusing the rest, so its
// goroutines do not pile up behind the target's answers.
func TestAbuseGlobalRequestFlood(t *testing.T) {
	t.Parallel()
	w := newAbuseWorld(t)
	fds, gor, rss0 := w.baseline(t)
	by := startBystander(t, w.bob)
	cl := w.alice.XDial(t, "web-1")
	n := count(20000, 100000)
	peak := 0
	sample := make(chan struct{})
	sampled := make(chan int)
	go func() { // the goroutine count while the flood is on
		m := 0
		for {
			select {
			case <-sample:
				sampled <- m
				return
			default:
			}
			if k, _, err := harness.Goroutines(w.pprof); err == nil && k > m {
				m = k
			}
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		// A forward that does not exist: the target's sshd refuses it at once.
		payload := ssh.Marshal(struct {
			Addr string
			Port uint32
		}{"127.0.0.1", uint32(20000 + i%40000)})
		if _, _, err := cl.SendRequest("cancel-tcpip-forward", false, payload); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if k, _, err := harness.Goroutines(w.pprof); err == nil {
		peak = k
	}
	close(sample)
	if m := <-sampled; m > peak {
		peak = m
	}
	// One with a reply: answered, after the ones still queued.
	ok, _, err := cl.SendRequest("cancel-tcpip-forward", true, ssh.Marshal(struct {
		Addr string
		Port uint32
	}{"127.0.0.1", 1}))
	took := time.Since(start)
	t.Logf("%d global requests without waiting in %s; gate goroutines: baseline %d, peak %d; RSS %.1f -> %.1f MiB",
		n, took.Round(time.Millisecond), gor, peak, rss0, w.rssMiB())
	if err != nil || ok {
		t.Errorf("a cancel of no forward: ok %v err %v, want refused", ok, err)
	}
	if peak > gor+200 {
		t.Errorf("gate goroutines peaked at %d during the flood (baseline %d)", peak, gor)
	}
	// The connection still serves a session.
	if s, err := cl.NewSession(); err != nil {
		t.Errorf("session after the flood: %v", err)
	} else if out, err := s.Output("echo ok"); err != nil || string(out) != "ok\n" {
		t.Errorf("session after the flood: %q %v", out, err)
	}
	by.check(t, "the global request flood")
	cl.Close()
	w.afterAbuse(t, fds, gor)
}

// 1,000 forwarded channels (direct-tcpip, granted) at once on one
// connection, each echoing through the target's sshd, then the 1,001st
// refused (limits.max_channels); the gate's memory per channel is logged and
// everything returns to baseline when they close.
func TestAbuseThousandForwards(t *testing.T) {
	t.Parallel()
	w := newAbuseWorld(t)
	fds, gor, rss0 := w.baseline(t)
	by := startBystander(t, w.bob)
	heap0 := w.heapMiB(t)
	cl := w.alice.XDial(t, "web-1")
	const n = 1000
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	var first atomic.Pointer[string]
	start := time.Now()
	work := make(chan int)
	for k := 0; k < 50; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := cl.Dial("tcp", w.echo)
				if err == nil {
					msg := []byte("ping " + strconv.Itoa(i) + "\n")
					buf := make([]byte, len(msg))
					if _, err = c.Write(msg); err == nil {
						if _, err = io.ReadFull(c, buf); err == nil && !bytes.Equal(buf, msg) {
							err = fmt.Errorf("echo %q, want %q", buf, msg)
						}
					}
				}
				if err != nil {
					failed.Add(1)
					s := fmt.Sprintf("forward %d: %v", i, err)
					first.CompareAndSwap(nil, &s)
				}
				conns[i] = c
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d forwards failed; first: %s", failed.Load(), n, *first.Load())
	}
	rss, heap := w.rssMiB(), w.heapMiB(t)
	peak, _ := w.goroutines(t)
	st := w.gate.Stats(t)
	t.Logf("%d forwarded channels open and echoing in %s; gate live heap %.1f -> %.1f MiB (%.1f KiB per channel), RSS %.1f -> %.1f MiB, goroutines %d -> %d, fds %d -> %d",
		n, took.Round(time.Millisecond), heap0, heap, (heap-heap0)*1024/n, rss0, rss, gor, peak, fds.FDs, st.FDs)
	// The 1,001st is over limits.max_channels.
	_, err := cl.Dial("tcp", w.echo)
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) || oe.Reason != ssh.ResourceShortage {
		t.Errorf("forward %d: %v, want refused with resource shortage", n+1, err)
	}
	// Each still echoes with all of them open.
	for i, c := range conns {
		if i%100 != 0 {
			continue
		}
		if _, err := c.Write([]byte("again\n")); err != nil {
			t.Errorf("forward %d: %v", i, err)
			continue
		}
		buf := make([]byte, 6)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "again\n" {
			t.Errorf("forward %d: %q %v", i, buf, err)
		}
	}
	by.check(t, "1,000 forwards")
	for i, c := range conns {
		c.Close()
		conns[i] = nil
	}
	cl.Close()
	w.afterAbuse(t, fds, gor)
}

// rawScript speaks the SSH connection protocol in ways x/crypto's client
// API cannot (paramiko's transport sends any message): replies nobody asked
// for, on a channel and globally, then a window adjust that overflows the
// 32-bit window. It prints one line per step.
const rawScript = `
import sys, time, base64, paramiko
from paramiko.message import Message
from paramiko.common import (cMSG_CHANNEL_SUCCESS, cMSG_CHANNEL_FAILURE, cMSG_REQUEST_SUCCESS,
    cMSG_REQUEST_FAILURE, cMSG_CHANNEL_WINDOW_ADJUST)
host, port, user, key, hostkey, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
hk = paramiko.Ed25519Key(data=base64.b64decode(hostkey.split()[1]))
t = paramiko.Transport((host, port))
t.connect(hostkey=hk, username=user, pkey=paramiko.Ed25519Key.from_private_key_file(key))
ch = t.open_session()
for i in range(n):
    for typ in (cMSG_CHANNEL_SUCCESS, cMSG_CHANNEL_FAILURE):
        m = Message(); m.add_byte(typ); m.add_int(ch.remote_chanid); t._send_user_message(m)
    for typ in (cMSG_REQUEST_SUCCESS, cMSG_REQUEST_FAILURE):
        m = Message(); m.add_byte(typ); t._send_user_message(m)
ch.exec_command("echo alive")
out = ch.makefile().read().decode()
print("unsolicited: %s status=%d" % (out.strip(), ch.recv_exit_status()))
ch2 = t.open_session()
m = Message(); m.add_byte(cMSG_CHANNEL_WINDOW_ADJUST); m.add_int(ch2.remote_chanid); m.add_int(0xFFFFFFFF)
t._send_user_message(m)
deadline = time.time() + 60
while t.is_active() and time.time() < deadline:
    time.sleep(0.1)
print("overflow: %s" % ("closed" if not t.is_active() else "open"))
`

// Replies to requests never made (channel success/failure, global request
// success/failure) are dropped by x/crypto, and the connection goes on; a
// window adjust that overflows uint32 is a protocol error to x/crypto,
// which closes that connection (and only it).
func TestAbuseUnsolicitedRepliesAndWindowOverflow(t *testing.T) {
	harness.RequireTools(t, "/usr/bin/python3", "/usr/lib/python3/dist-packages/paramiko/__init__.py")
	t.Parallel()
	w := newAbuseWorld(t)
	fds, gor, _ := w.baseline(t)
	by := startBystander(t, w.bob)
	n := count(2000, 25000)
	script := t.TempDir() + "/raw.py"
	if err := os.WriteFile(script, []byte(rawScript), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := harness.Run(exec.Command("/usr/bin/python3", script, w.gate.Host, strconv.Itoa(w.gate.Port), w.alice.Login("web-1"),
		w.alice.Key, w.gate.HostKey, strconv.Itoa(n)), nil, long)
	t.Logf("%d x 4 unsolicited replies, then a window overflow, in %s: %q", n, time.Since(start).Round(time.Millisecond), r.Stdout)
	if r.Code != 0 {
		t.Fatalf("script: exit %d stderr %s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "unsolicited: alive status=0\n") {
		t.Errorf("the connection did not go on after unsolicited replies: %q", r.Stdout)
	}
	if !strings.Contains(r.Stdout, "overflow: closed\n") {
		t.Errorf("the connection stayed open after a window overflow: %q", r.Stdout)
	}
	by.check(t, "unsolicited replies and the window overflow")
	w.afterAbuse(t, fds, gor)
}
