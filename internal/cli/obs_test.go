package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/app"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

func TestServeMetricsListen(t *testing.T) {
	var got app.Options
	serveFunc = func(ctx context.Context, o app.Options) error { got = o; return nil }
	t.Cleanup(func() { serveFunc = app.Serve })
	if code, _, errOut := runCLI(t, t.TempDir(), "", "serve", "--metrics-listen", "127.0.0.1:9100"); code != 0 || got.MetricsListen != "127.0.0.1:9100" {
		t.Fatalf("serve --metrics-listen: exit %d %q, passed %+v", code, errOut, got)
	}
	// The real LoadConfig rejects a bad address, naming it: exit 2.
	serveFunc = func(ctx context.Context, o app.Options) error { _, err := app.LoadConfig(o); return err }
	code, _, errOut := runCLI(t, t.TempDir(), "", "serve", "--metrics-listen", "nowhere")
	if code != 2 || !strings.Contains(errOut, `metrics.listen: "nowhere" is not HOST:PORT`) {
		t.Errorf("bad --metrics-listen: exit %d %q", code, errOut)
	}
}

func TestReplay(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.cast", `{"version": 2, "width": 80, "height": 24}`+"\n"+
		`[0.1, "o", "hello \u001b[1mbold\u001b[0m"]`+"\n"+`[0.2, "r", "100x40"]`+"\n"+`[0.3, "i", "typed"]`+"\n"+
		`[5, "o", "\u001b]0;title\u0007\u001b[6n world\r\n"]`+"\n")
	start := time.Now()
	code, out, errOut := runCLI(t, "", "", "replay", good, "--max-idle", "10ms")
	if code != 0 || out != "hello \x1b[1mbold\x1b[0m^[]0;title^G^[[6n world\r\n" {
		t.Errorf("replay: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("--max-idle 10ms did not shorten a 4.7 s pause")
	}
	for _, tc := range []struct {
		args   []string
		code   int
		errHas string
	}{
		{[]string{"replay", writeFile(t, dir, "bad.cast", `{"version": 2, "width": 80, "height": 24}`+"\n"+`[1, "o", 2]`+"\n")}, 2, "bad.cast: line 2: event data is not a string"},
		{[]string{"replay", writeFile(t, dir, "v1.cast", `{"version": 1}`)}, 2, "v1.cast: line 1: asciicast version 1, want 2"},
		{[]string{"replay", dir + "/missing.cast"}, 1, "missing.cast: no such file"},
		{[]string{"replay", good, "--speed", "-1"}, 2, "--speed"},
		{[]string{"replay", good, "--max-idle", "-1s"}, 2, "--max-idle"},
		{[]string{"replay"}, 2, "missing FILE"},
	} {
		code, out, errOut := runCLI(t, "", "", tc.args...)
		if code != tc.code || out != "" || !strings.Contains(errOut, tc.errHas) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, out, errOut, tc.code, tc.errHas)
		}
	}
}

func TestSessions(t *testing.T) {
	data := t.TempDir()
	d, err := datadir.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(d.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if err := st.AddLiveSession(ctx, gate.LiveSession{ID: "0123456789abcdef", GateID: "g", User: "alice", Target: "web-1", Login: "root", Started: t0, BytesIn: 3, BytesOut: 40}); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, data, "", "sessions")
	want := "ID                USER   TARGET  LOGIN  SINCE                 BYTES_IN  BYTES_OUT\n" +
		"0123456789abcdef  alice  web-1   root   2026-11-30T12:00:00Z  3         40\n"
	if code != 0 || out != want {
		t.Errorf("sessions: exit %d\n%s\nwant\n%s", code, out, want)
	}
	code, out, _ = runCLI(t, data, "", "sessions", "list", "--json")
	if code != 0 || !strings.Contains(out, `"id": "0123456789abcdef"`) || !strings.Contains(out, `"bytes_out": 40`) || !strings.Contains(out, `"since": "2026-11-30T12:00:00Z"`) {
		t.Errorf("sessions --json: exit %d %s", code, out)
	}
	if code, _, errOut := runCLI(t, data, "", "sessions", "kill", "ffffffffffffffff"); code != 1 || !strings.Contains(errOut, "session ffffffffffffffff not found") {
		t.Errorf("kill unknown: exit %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, data, "", "sessions", "kill", "a;b"); code != 2 || !strings.Contains(errOut, `"a;b" is not a session id`) {
		t.Errorf("kill bad id: exit %d %q", code, errOut)
	}
	// No gate runs on this data directory: a watch says where the store
	// lists the session, or that there is none.
	if code, out, errOut := runCLI(t, data, "", "sessions", "watch", "0123456789abcdef"); code != 1 || out != "" ||
		!strings.Contains(errOut, "cannot reach a running gate at "+filepath.Join(data, "watch.sock")) || !strings.Contains(errOut, "the store lists session 0123456789abcdef on gate g") {
		t.Errorf("watch with no gate: exit %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, data, "", "sessions", "watch", "ffffffffffffffff"); code != 1 || !strings.Contains(errOut, "session ffffffffffffffff not found") {
		t.Errorf("watch unknown: exit %d %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, data, "", "sessions", "watch", "a;b"); code != 2 || !strings.Contains(errOut, `"a;b" is not a session id`) {
		t.Errorf("watch bad id: exit %d %q", code, errOut)
	}
	// No gate here to end it: the request is recorded and reported.
	if code, out, _ := runCLI(t, data, "", "sessions", "kill", "0123456789abcdef"); code != 0 || !strings.Contains(out, "kill requested for session 0123456789abcdef") {
		t.Errorf("kill: exit %d %q", code, out)
	}
	if ids, err := st.KillRequests(ctx, "g"); err != nil || len(ids) != 1 {
		t.Errorf("kill requests %v %v", ids, err)
	}
	code, out, _ = runCLI(t, data, "", "sessions")
	if code != 0 || !strings.Contains(out, "0123456789abcdef*") {
		t.Errorf("sessions after kill request: %q", out)
	}
}
