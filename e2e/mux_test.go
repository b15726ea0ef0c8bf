package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshgate/sshgate/e2e/harness"
)

// direct is a client of the world's upstream sshd itself (no gate), for
// comparing the gate's behaviour with OpenSSH's.
func (w *world) direct(t *testing.T) *harness.Client {
	t.Helper()
	key, pub := harness.Keygen(t, t.TempDir(), "id_direct")
	w.sshd.Authorize(t, pub)
	return harness.Direct(t, w.sshd, "root", key)
}

// Several sessions over one connection (OpenSSH connection multiplexing):
// the gate serves many session channels per client connection.
func TestMultiplexedSessions(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{})
	sock := filepath.Join(t.TempDir(), "mux")
	c := w.alice.WithOpts("ControlMaster=yes", "ControlPath="+sock)
	master := c.SSHTo("web-1", []string{"-N"})
	master.Stdout, master.Stderr = os.Stderr, os.Stderr
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { master.Wait(); close(done) }()
	t.Cleanup(func() { master.Process.Kill(); <-done })
	if !harness.Eventually(short, func() bool { _, err := os.Stat(sock); return err == nil }) {
		t.Fatal("control socket never appeared")
	}
	client := w.alice.WithOpts("ControlMaster=no", "ControlPath="+sock)
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprintf("session-%d", i)
			r := harness.Run(client.SSHTo("web-1", nil, "sleep 0.2; echo "+want+"; exit "+fmt.Sprint(10+i)), nil, short)
			if r.Code != 10+i || strings.TrimSpace(r.Stdout) != want {
				t.Errorf("multiplexed session %d: exit %d stdout %q stderr %q (%v)", i, r.Code, r.Stdout, r.Stderr, r.Err)
			}
		}()
	}
	wg.Wait()
	harness.Run(client.SSHTo("web-1", []string{"-O", "exit"}), nil, short)
	select {
	case <-done:
	case <-time.After(short):
		t.Error("master did not exit after -O exit")
	}
}

// A command killed by a signal ends the client as it would against OpenSSH.
func TestExitSignalLikeOpenSSH(t *testing.T) {
	t.Parallel()
	gateOnly(t)
	w := newWorld(t, worldOptions{})
	d := w.direct(t)
	for _, cmd := range []string{"kill -TERM $$", "kill -KILL $$", "echo partial; kill -INT $$"} {
		want := harness.Run(d.SSHTo("", nil, cmd), nil, short)
		got := harness.Run(w.alice.SSHTo("web-1", nil, cmd), nil, short)
		if got.Code != want.Code || got.Stdout != want.Stdout || got.Err != nil {
			t.Errorf("%q: gate exit %d stdout %q stderr %q; OpenSSH exit %d stdout %q stderr %q",
				cmd, got.Code, got.Stdout, got.Stderr, want.Code, want.Stdout, want.Stderr)
		}
	}
}
