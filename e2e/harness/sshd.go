package harness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SSHDOptions tune StartSSHD; the zero value is a fresh sshd on a free port.
type SSHDOptions struct {
	Port    int      // listen on this port (e.g. to restart on the same one)
	HostKey string   // use this private host key instead of generating one
	Extra   []string // extra sshd_config lines
	// Certificates: a file of user CA keys (TrustedUserCAKeys) and the
	// host key's certificate (HostCertificate), when set.
	TrustedUserCAKeys string
	HostCertificate   string
	// NetNS runs the sshd inside this network namespace (see NewNetNS),
	// listening on the namespace's address.
	NetNS *NetNS
}

// SSHD is a real OpenSSH sshd, run with its own config (never the system's).
type SSHD struct {
	Host           string
	Port           int
	Addr           string
	Dir            string
	Config         string
	HostKey        string // private host key path
	HostKeyPub     string // public host key path (for `target add --host-key`)
	AuthorizedKeys string
	Stderr         *Buffer

	proc  *Process
	netns *NetNS
}

// StartSSHD runs /usr/sbin/sshd -D -e on a free 127.0.0.1 port with a fresh
// ed25519 host key and an empty authorized_keys file. It is stopped, with
// the sessions it started, in t.Cleanup.
func StartSSHD(t testing.TB, opts SSHDOptions) *SSHD {
	t.Helper()
	RequireTools(t, "/usr/sbin/sshd", "ssh-keygen")
	os.MkdirAll("/run/sshd", 0o755)
	s := &SSHD{Host: "127.0.0.1", Dir: t.TempDir(), Stderr: &Buffer{}, netns: opts.NetNS}
	if opts.NetNS != nil {
		s.Host = opts.NetNS.InnerIP
	}
	if opts.HostKey != "" {
		s.HostKey = opts.HostKey
	} else {
		s.HostKey, _ = Keygen(t, s.Dir, "ssh_host_ed25519_key")
	}
	s.HostKeyPub = s.HostKey + ".pub"
	s.AuthorizedKeys = filepath.Join(s.Dir, "authorized_keys")
	if err := os.WriteFile(s.AuthorizedKeys, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s.Port = opts.Port
		if s.Port == 0 {
			s.Port = FreePort(t)
		}
		s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
		extra := opts.Extra
		if opts.TrustedUserCAKeys != "" {
			extra = append(extra, "TrustedUserCAKeys "+opts.TrustedUserCAKeys)
		}
		if opts.HostCertificate != "" {
			extra = append(extra, "HostCertificate "+opts.HostCertificate)
		}
		if lastErr = s.start(t, extra); lastErr == nil || opts.Port != 0 {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("start sshd: %v\nsshd stderr:\n%s", lastErr, s.Stderr.String())
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sshd %s stderr:\n%s", s.Addr, clip(s.Stderr.String()))
		}
	})
	return s
}

// SSHDConfig is the sshd_config of a test or bench sshd: host key, an
// authorized_keys file, root by key only, sftp-server, no PAM, no pid file,
// generous session limits, and no ~/.bashrc for sessions' commands. extra
// lines are appended.
func SSHDConfig(host string, port int, hostKey, authorizedKeys, logLevel string, extra ...string) string {
	cfg := []string{
		"Port " + strconv.Itoa(port),
		"ListenAddress " + host,
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + authorizedKeys,
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"Subsystem sftp /usr/lib/openssh/sftp-server",
		"AllowTcpForwarding yes",
		"PidFile none",
		"LogLevel " + logLevel,
		"AcceptEnv LANG LC_*",
		"UseDNS no",
		"MaxStartups 100:30:200",
		"MaxSessions 200",
		// Debian's bash sources ~/.bashrc for commands run by sshd unless
		// SHLVL says it is nested; root's rc file on these machines runs
		// `pyenv init`, whose rehash lock stalls concurrent shells for up
		// to 60 s (and would be timed by the bench).
		"SetEnv SHLVL=1",
	}
	return strings.Join(append(cfg, extra...), "\n") + "\n"
}

func (s *SSHD) start(t testing.TB, extra []string) error {
	s.Config = filepath.Join(s.Dir, "sshd_config")
	cfg := SSHDConfig(s.Host, s.Port, s.HostKey, s.AuthorizedKeys, "VERBOSE", extra...)
	if err := os.WriteFile(s.Config, []byte(cfg), 0o600); err != nil {
		return err
	}
	argv := []string{"/usr/sbin/sshd", "-D", "-e", "-f", s.Config}
	if s.netns != nil {
		argv = append(s.netns.Exec(), argv...)
	}
	p, err := StartProcess("sshd", s.Stderr, nil, argv...)
	if err != nil {
		return err
	}
	if err := WaitBanner(s.Addr, 20*time.Second, p.Alive); err != nil {
		p.Stop(0)
		return fmt.Errorf("sshd: %w (exit: %v)", err, p.Err())
	}
	s.proc = p
	return nil
}

// Authorize appends an authorized_keys line.
func (s *SSHD) Authorize(t testing.TB, line string) {
	t.Helper()
	f, err := os.OpenFile(s.AuthorizedKeys, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, strings.TrimSpace(line)); err != nil {
		t.Fatal(err)
	}
}

// PID is the listening sshd's process id.
func (s *SSHD) PID() int { return s.proc.PID() }

// KillSessions SIGKILLs every process the sshd started (its per-connection
// children and their commands), leaving the listener running, and waits
// until they are gone. It returns how many it killed.
func (s *SSHD) KillSessions(t testing.TB) int {
	t.Helper()
	kids := Descendants(s.PID())
	for _, pid := range kids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if !Eventually(10*time.Second, func() bool {
		for _, pid := range kids {
			if processAlive(pid) {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("sshd sessions %v still alive 10s after SIGKILL", kids)
	}
	return len(kids)
}

// Stop kills the sshd and every session it started, and waits for them.
func (s *SSHD) Stop() {
	if s.proc != nil {
		s.proc.Stop(0)
	}
}

// RestartWith stops this sshd and starts a new one on the same port with
// the same host key and authorized keys, and opts (Port and HostKey are
// taken from this one).
func (s *SSHD) RestartWith(t testing.TB, opts SSHDOptions) *SSHD {
	t.Helper()
	opts.HostKey = s.HostKey
	return s.restart(t, opts)
}

// Restart stops this sshd and starts a new one on the same port, with a new
// host key if newHostKey (else the same one). The authorized_keys file is
// carried over.
func (s *SSHD) Restart(t testing.TB, newHostKey bool, extra ...string) *SSHD {
	t.Helper()
	opts := SSHDOptions{Extra: extra}
	if !newHostKey {
		opts.HostKey = s.HostKey
	}
	return s.restart(t, opts)
}

// restart stops this sshd and starts one with opts on its port, carrying
// its authorized_keys file over.
func (s *SSHD) restart(t testing.TB, opts SSHDOptions) *SSHD {
	t.Helper()
	s.Stop()
	opts.Port = s.Port
	if opts.NetNS == nil {
		opts.NetNS = s.netns
	}
	n := StartSSHD(t, opts)
	keys, err := os.ReadFile(s.AuthorizedKeys)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.AuthorizedKeys, keys, 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

// Processes returns the pids of processes started by this sshd whose command
// line contains pattern (the sessions' commands, not the ssh clients').
func (s *SSHD) Processes(pattern string) []int {
	var out []int
	for _, pid := range Descendants(s.PID()) {
		if strings.Contains(cmdline(pid), pattern) && processAlive(pid) {
			out = append(out, pid)
		}
	}
	return out
}
