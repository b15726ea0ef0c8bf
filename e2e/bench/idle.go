package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/e2e/harness"
)

// idleClient holds open connections, each with one session running sleep.
type idleClient struct {
	mu    sync.Mutex
	conns []*ssh.Client
}

func (c *idleClient) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.conns {
		cl.Close()
	}
	c.conns = nil
}

// openIdle opens n connections to addr as login, each with a session running
// `sleep 600`, eight handshakes at a time (under the gate's per-source limit
// of unauthenticated connections).
func openIdle(ctx context.Context, addr, login, keyFile, hostKeyFile string, n int) (*idleClient, error) {
	cfg, err := xClientConfig(login, keyFile, hostKeyFile)
	if err != nil {
		return nil, err
	}
	ic := &idleClient{}
	sem := make(chan struct{}, 8)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if ctx.Err() != nil {
				errs <- ctx.Err()
				return
			}
			cl, err := ssh.Dial("tcp", addr, cfg)
			if err != nil {
				errs <- fmt.Errorf("dial %s: %w", addr, err)
				return
			}
			ic.mu.Lock()
			ic.conns = append(ic.conns, cl)
			ic.mu.Unlock()
			s, err := cl.NewSession()
			if err != nil {
				errs <- fmt.Errorf("session: %w", err)
				return
			}
			if err := s.Start("sleep 600"); err != nil {
				errs <- fmt.Errorf("start sleep: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		ic.close()
		return nil, err
	}
	return ic, nil
}

// xClientConfig is an x/crypto client configuration logging in as login
// with the private key in keyFile, pinning the host key in hostKeyFile.
func xClientConfig(login, keyFile, hostKeyFile string) (*ssh.ClientConfig, error) {
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(kb)
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	hb, err := os.ReadFile(hostKeyFile)
	if err != nil {
		return nil, err
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey(hb)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", hostKeyFile, err)
	}
	return &ssh.ClientConfig{
		User:            login,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hk),
		// The server may have several host keys; ask for the pinned one.
		HostKeyAlgorithms: []string{hk.Type()},
		Timeout:           30 * time.Second,
	}, nil
}

// sleepers lists the `sleep` processes below the sshd.
func (s *sshd) sleepers() []int {
	var out []int
	for _, p := range harness.Descendants(s.PID()) {
		if harness.Comm(p) == "sleep" {
			out = append(out, p)
		}
	}
	return out
}

// waitSleepers waits until the sshd runs n sleep commands.
func (s *sshd) waitSleepers(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got := len(s.sleepers())
		if got == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd runs %d sleep commands, want %d", got, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killSleepers ends the sessions' commands (before their connections close,
// while they are still descendants of the sshd) and waits for them.
func (s *sshd) killSleepers() {
	for _, p := range s.sleepers() {
		syscall.Kill(p, syscall.SIGKILL)
	}
	s.waitSleepers(0, 10*time.Second)
}

// goroutines reads the total of the gate's goroutine profile (-1 when it
// cannot be read).
func (g *gate) goroutines() int {
	n, _, err := harness.Goroutines(g.pprof)
	if err != nil {
		return -1
	}
	return n
}

// idleGate is what one gate spends on the idle sessions.
type idleGate struct {
	kiB                float64 // growth of the gate's VmRSS per relayed session
	heapKiB, stackKiB  float64 // growth of its live heap and goroutine stacks per session (-1: unknown)
	before, with       int64   // VmRSS, KiB
	gorBefore, gorWith int
}

type idleResult struct {
	n         int
	sshdKiB   float64 // PSS of sshd's per-connection processes, per direct session
	sshdProcs int
	gate      idleGate
	base      *idleGate // -baseline: the same through a gate of that binary
}

// settle gives the processes a moment after the last session started so
// that lazily touched pages and goroutines are in place.
const settle = 2 * time.Second

// heapStack reads a gate's live heap and stacks after a collection (-1, -1
// when they cannot be read).
func (g *gate) heapStack() (heap, stack int64) {
	h, err := harness.HeapAlloc(g.pprof)
	if err != nil {
		return -1, -1
	}
	st, err := harness.StackInuse(g.pprof)
	if err != nil {
		return -1, -1
	}
	return h, st
}

func runIdle(ctx context.Context, o *opts, s *sshd, g, base *gate, key string) (idleResult, error) {
	r := idleResult{n: o.sessions}

	// Direct: what the sshd spends per session.
	s.killSleepers()
	b, _ := s.sessionPSS()
	ic, err := openIdle(ctx, s.addr, "root", key, s.hostKeyPub, o.sessions)
	if err != nil {
		return r, fmt.Errorf("direct sessions: %w", err)
	}
	if err := s.waitSleepers(o.sessions, 60*time.Second); err != nil {
		s.killSleepers()
		ic.close()
		return r, err
	}
	time.Sleep(settle)
	with, procs := s.sessionPSS()
	r.sshdKiB = float64(with-b) / float64(o.sessions)
	r.sshdProcs = procs
	s.killSleepers()
	ic.close()

	// Through the gate (and the baseline's): what the gate adds per session.
	var err2 error
	if r.gate, err2 = idleThrough(ctx, o, s, g, key); err2 != nil {
		return r, err2
	}
	if base != nil {
		bg, err := idleThrough(ctx, o, s, base, key)
		if err != nil {
			return r, fmt.Errorf("baseline: %w", err)
		}
		r.base = &bg
	}
	return r, nil
}

func idleThrough(ctx context.Context, o *opts, s *sshd, g *gate, key string) (idleGate, error) {
	var r idleGate
	time.Sleep(settle)
	r.before = harness.StatusKiB(g.PID(), "VmRSS")
	r.gorBefore = g.goroutines()
	h0, s0 := g.heapStack()
	ic, err := openIdle(ctx, g.addr, "alice+up", key, g.hostKeyPub(), o.sessions)
	if err != nil {
		return r, fmt.Errorf("sessions through the gate: %w", err)
	}
	defer ic.close()
	defer s.killSleepers()
	if err := s.waitSleepers(o.sessions, 60*time.Second); err != nil {
		return r, err
	}
	time.Sleep(settle)
	r.with = harness.StatusKiB(g.PID(), "VmRSS")
	r.gorWith = g.goroutines()
	r.kiB = float64(r.with-r.before) / float64(o.sessions)
	r.heapKiB, r.stackKiB = -1, -1
	if h1, s1 := g.heapStack(); h0 >= 0 && h1 >= 0 {
		r.heapKiB = float64(h1-h0) / 1024 / float64(o.sessions)
		r.stackKiB = float64(s1-s0) / 1024 / float64(o.sessions)
	}
	return r, nil
}
