package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/target"
)

func TestExecTransportInjectsTheAgent(t *testing.T) {
	f := newFixture(t, nil)
	f.open(spec("web", gate.DockerSpec{User: "1000:1001", Env: []string{"A=1"}}), "alice")
	req := f.eng.lastCreate
	if len(req.Binds) != 0 {
		t.Errorf("binds with the exec transport: %v", req.Binds)
	}
	paths := map[string]File{}
	for _, fl := range req.Files {
		paths[fl.Path] = fl
	}
	hk := paths[DirMount+"/"+hostKeyFile]
	if hk.Mode != 0o400 || hk.UID != 1000 || hk.GID != 1001 || len(hk.Data) == 0 {
		t.Errorf("host key file %+v", hk)
	}
	if a := paths[AgentMount]; a.Source != f.b.AgentPath() || a.Mode != 0o555 {
		t.Errorf("agent file %+v", a)
	}
	if !slices.Contains(req.Entrypoint, "--listen") || req.Entrypoint[0] != AgentMount {
		t.Errorf("entrypoint %v", req.Entrypoint)
	}
	if !slices.Equal(req.Env, []string{"HOME=", "A=1"}) || req.User != "1000:1001" {
		t.Errorf("env %v user %q", req.Env, req.User)
	}
}

func TestSocketTransportMountsTheGateDirectory(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Transport = TransportSocket })
	f.eng.createErr = errors.New("stop here") // the agent would dial the socket
	_, err := f.b.Open(context.Background(), target.Request{Target: spec("web", gate.DockerSpec{User: "65534"})})
	if err == nil {
		t.Fatal("Open succeeded")
	}
	req := f.eng.lastCreate
	if len(req.Files) != 0 || len(req.Binds) != 2 || req.Binds[0].Target != DirMount || req.Binds[1].Target != AgentMount {
		t.Fatalf("binds %v files %d", req.Binds, len(req.Files))
	}
	if !slices.Contains(req.Entrypoint, "unix:"+DirMount+"/"+socketFile) {
		t.Errorf("entrypoint %v", req.Entrypoint)
	}
	// The failed create left no directory behind.
	if ents, _ := os.ReadDir(f.b.cfg.ContainersDir); len(ents) != 0 {
		t.Errorf("directories left: %v", ents)
	}
}

func TestSocketTransportAgentDialsIn(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Transport = TransportSocket })
	up := f.open(spec("web", gate.DockerSpec{User: "65534"}), "alice")
	if up.Conn == nil || up.Client.HostKeyCallback == nil || up.Client.User != "user" {
		t.Fatalf("upstream %+v", up)
	}
	// Per user: the keeper is PID 1 and keeps a connection dialed to the
	// gate's warm socket; each connection takes one, with no exec.
	// The gate speaks first on a connection (its SSH version line), which
	// is when the agent dials its next spare.
	shell := func() *target.Upstream {
		u := f.open(spec("shell", gate.DockerSpec{Per: "user"}), "alice")
		if _, err := u.Conn.Write([]byte("SSH-2.0-sshgate\r\n")); err != nil {
			t.Fatal(err)
		}
		return u
	}
	w, w2, w3 := shell(), shell(), shell()
	w3.Release(context.Background())
	if n, execs := f.eng.count(); n != 2 || execs != 0 {
		t.Fatalf("%d containers, %d execs; want 0 execs", n, execs)
	}
	up.Release(context.Background())
	w.Release(context.Background())
	w2.Release(context.Background())
	if n, _ := f.eng.count(); n != 1 {
		t.Fatalf("%d containers after Release, want the per-user one", n)
	}
	// Only the per-user container's directory is left, and no socket in it
	// but the warm one its live agent dials.
	ents, _ := os.ReadDir(f.b.cfg.ContainersDir)
	if len(ents) != 1 {
		t.Fatalf("directories %v", ents)
	}
	files, _ := os.ReadDir(filepath.Join(f.b.cfg.ContainersDir, ents[0].Name()))
	for _, fl := range files {
		if fl.Type()&os.ModeSocket != 0 && fl.Name() != warmSocketFile {
			t.Errorf("socket %s left", fl.Name())
		}
	}
}
