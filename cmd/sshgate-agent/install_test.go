package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestInstall runs the built agent's --install as a pod's installer hook would:
// the agent copies itself and writes the files its environment names.
func TestInstall(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(agentBin, "--install", dir)
	cmd.Env = []string{"SSHGATE_FILE_host_key=0400:" + base64.StdEncoding.EncodeToString([]byte("secret\n")),
		"SSHGATE_FILE_authorized_keys=0444:" + base64.StdEncoding.EncodeToString([]byte("ssh-ed25519 AAAA x\n")), "OTHER=1"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install: %v: %s", err, out)
	}
	self, _ := os.ReadFile(agentBin)
	got, _ := os.ReadFile(filepath.Join(dir, "sshgate-agent"))
	if !bytes.Equal(self, got) {
		t.Fatalf("installed agent: %d bytes, want %d", len(got), len(self))
	}
	for name, want := range map[string]os.FileMode{"sshgate-agent": 0o555, "host_key": 0o400, "authorized_keys": 0o444} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", name, err, st.Mode(), want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "host_key")); string(b) != "secret\n" {
		t.Errorf("host_key = %q", b)
	}
	for _, bad := range [][]string{
		{"SSHGATE_FILE_..=0444:"}, {"SSHGATE_FILE_x=zz:"}, {"SSHGATE_FILE_x=0444:!!"},
	} {
		cmd := exec.Command(agentBin, "--install", t.TempDir())
		cmd.Env = bad
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || bytes.Count(out, []byte("\n")) != 1 {
			t.Errorf("%v: %v %q, want exit 2 and one line", bad, err, out)
		}
	}
}

// TestHold: --hold, the installer container's process, waits for SIGTERM
// and then exits 0.
func TestHold(t *testing.T) {
	cmd := exec.Command(agentBin, "--hold")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("--hold ended by itself: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("--hold after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("--hold did not end on SIGTERM")
	}
}
