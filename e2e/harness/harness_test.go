package harness

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSSHDDirect checks the harness itself against a real sshd, no gate.
func TestSSHDDirect(t *testing.T) {
	RequireTools(t, "/usr/sbin/sshd", "ssh", "scp", "ssh-keygen")
	t.Parallel()
	s := StartSSHD(t, SSHDOptions{})
	key, pub := Keygen(t, t.TempDir(), "id_test")
	s.Authorize(t, pub)
	c := Direct(t, s, "root", key)

	r := Run(c.SSHTo("", nil, "echo out; echo err >&2; exit 3"), nil, 20*time.Second)
	if r.Code != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Fatalf("exec: %+v", r)
	}
	r = MustRun(t, c.SSHTo("", nil, "echo $SHLVL"), nil, 20*time.Second)
	if strings.TrimSpace(r.Stdout) != "2" {
		t.Fatalf("session SHLVL %q, want 2 (SetEnv SHLVL=1 keeps ~/.bashrc out)", r.Stdout)
	}
	r = MustRun(t, c.SSHTo("", nil, "wc -c"), []byte("12345"), 20*time.Second)
	if strings.TrimSpace(r.Stdout) != "5" {
		t.Fatalf("wc -c: %q", r.Stdout)
	}

	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.WriteFile(src, []byte("hello"), 0o644)
	MustRun(t, c.SCP(src, c.Dest("")+":"+filepath.Join(dir, "dst")), nil, 20*time.Second)
	if b, _ := os.ReadFile(filepath.Join(dir, "dst")); string(b) != "hello" {
		t.Fatalf("scp: %q", b)
	}

	// A new host key on the same port is refused by the client.
	s2 := s.Restart(t, true)
	r = Run(c.SSHTo("", nil, "true"), nil, 20*time.Second)
	if r.Code != 255 || !strings.Contains(r.Stderr, "HOST IDENTIFICATION HAS CHANGED") {
		t.Fatalf("changed host key: %+v", r)
	}
	_ = s2
}

func TestDescendantsAndStats(t *testing.T) {
	st, err := Stats(os.Getpid())
	if err != nil || st.FDs == 0 || st.Threads == 0 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	if len(Descendants(1)) == 0 {
		t.Fatal("pid 1 has no descendants?")
	}
}

// A client with UpdateHostKeys=yes learns a second host key of a plain sshd:
// the mechanism the gate's TestUpstreamHostKeysNotLearned relies on.
func TestSSHDAnnouncesHostKeys(t *testing.T) {
	RequireTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	t.Parallel()
	dir := t.TempDir()
	ecdsa := filepath.Join(dir, "ssh_host_ecdsa_key")
	MustRun(t, exec.Command("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", ecdsa), nil, 20*time.Second)
	s := StartSSHD(t, SSHDOptions{Extra: []string{"HostKey " + ecdsa}})
	key, pub := Keygen(t, dir, "id_test")
	s.Authorize(t, pub)
	c := Direct(t, s, "root", key).WithOpts("UpdateHostKeys=yes")
	MustRun(t, c.SSHTo("", nil, "true"), nil, 20*time.Second)
	kh, _ := os.ReadFile(c.KnownHosts)
	if !strings.Contains(string(kh), "ecdsa-sha2-nistp256") {
		t.Fatalf("client did not learn the second host key:\n%s", kh)
	}
}

// TestParseMetrics reads sample lines with and without labels and skips
// comments and lines without a number.
func TestParseMetrics(t *testing.T) {
	text := "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 42\n" +
		"sshgate_relay_data_bytes_total{direction=\"in\"} 1.5e+06\nspaced{reason=\"a b\"} 3\nbroken line\nempty \n"
	m := ParseMetrics(text)
	if m["go_goroutines"] != 42 || m[`sshgate_relay_data_bytes_total{direction="in"}`] != 1.5e6 || m[`spaced{reason="a b"}`] != 3 || len(m) != 3 {
		t.Fatalf("ParseMetrics = %v", m)
	}
}

// TestCheckSHA256Sum checks the digest line of the real sha256sum.
func TestCheckSHA256Sum(t *testing.T) {
	RequireTools(t, "sha256sum")
	data := []byte("soak data")
	r := MustRun(t, exec.Command("sha256sum"), data, 20*time.Second)
	sum := sha256.Sum256(data)
	if err := CheckSHA256Sum(r.Stdout, sum[:]); err != nil {
		t.Fatal(err)
	}
	other := sha256.Sum256([]byte("other"))
	if err := CheckSHA256Sum(r.Stdout, other[:]); err == nil {
		t.Fatal("a wrong digest passed")
	}
}
