package harness

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// XConfig is an x/crypto client configuration for c (its key, the gate's
// known_hosts) logging in as c.Login(target): for tests that speak the
// protocol in ways the OpenSSH client does not.
func (c *Client) XConfig(t testing.TB, target string) *ssh.ClientConfig {
	t.Helper()
	pem, err := os.ReadFile(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	hk, err := knownhosts.New(c.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	return &ssh.ClientConfig{User: c.Login(target), Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hk, HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}, Timeout: 60 * time.Second}
}

// XDial logs in with the x/crypto client as c.Login(target); the connection
// is closed at the end of the test.
func (c *Client) XDial(t testing.TB, target string) *ssh.Client {
	t.Helper()
	cl, err := ssh.Dial("tcp", net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), c.XConfig(t, target))
	if err != nil {
		t.Fatalf("x/crypto login as %s: %v", c.Login(target), err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// PProfEnv is the environment that makes a gate serve net/http/pprof on a
// free loopback port (SSHGATE_PPROF), and that address.
func PProfEnv(t testing.TB) (env, addr string) {
	t.Helper()
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	return "SSHGATE_PPROF=" + addr, addr
}

// Goroutines reads the goroutine count (and the whole dump, for a failure
// message) from a gate's pprof endpoint at addr.
func Goroutines(addr string) (int, string, error) {
	cl := http.Client{Timeout: 30 * time.Second}
	resp, err := cl.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	var n int
	if _, err := fmt.Sscanf(string(b), "goroutine profile: total %d", &n); err != nil {
		return 0, "", fmt.Errorf("goroutine profile: %v", err)
	}
	return n, string(b), nil
}

// RSSKiB is a process's resident set (VmRSS) in KiB.
func RSSKiB(pid int) int64 { return StatusKiB(pid, "VmRSS") }

// StackInuse is the bytes of the gate's goroutine stacks (the "# Stack =
// INUSE / SYS" line of pprof's heap profile, read with gc=1).
func StackInuse(addr string) (int64, error) { return heapProfileLine(addr, "Stack") }

// HeapAlloc is the gate's live heap in bytes just after a garbage
// collection (pprof's heap profile with gc=1, its HeapAlloc line): what it
// holds, without the garbage RSS still counts.
func HeapAlloc(addr string) (int64, error) { return heapProfileLine(addr, "HeapAlloc") }

// heapProfileLine reads the first number of the "# NAME = ..." line of the
// gate's heap profile (debug=1, after a garbage collection).
func heapProfileLine(addr, name string) (int64, error) {
	cl := http.Client{Timeout: 60 * time.Second}
	resp, err := cl.Get("http://" + addr + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	_, rest, ok := strings.Cut(string(b), "\n# "+name+" = ")
	if !ok {
		return 0, fmt.Errorf("no %s line in the heap profile", name)
	}
	var n int64
	if _, err := fmt.Sscanf(rest, "%d", &n); err != nil {
		return 0, fmt.Errorf("heap profile %s: %v", name, err)
	}
	return n, nil
}
