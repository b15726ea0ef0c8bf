package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

func TestGates(t *testing.T) {
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
	if code, out, _ := runCLI(t, data, "", "gates"); code != 0 || out != "ID  ADDRESS  VERSION  STARTED  HEARTBEAT  SESSIONS  STATE\n" {
		t.Fatalf("no gates: exit %d %q", code, out)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	now := time.Now().UTC().Truncate(time.Second)
	for _, g := range []gate.GateInfo{
		{ID: "aaaa", Address: "10.0.0.1:2222", Version: "v1.2.0", Started: t0, Heartbeat: t0.Add(time.Minute), Sessions: 4},
		{ID: "bbbb", Address: "10.0.0.2:2222", Started: t0, Heartbeat: now, Sessions: 1},
	} {
		if err := st.RegisterGate(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ := runCLI(t, data, "", "gates")
	want := "ID    ADDRESS        VERSION  STARTED               HEARTBEAT             SESSIONS  STATE\n" +
		"aaaa  10.0.0.1:2222  v1.2.0   2026-11-30T12:00:00Z  2026-11-30T12:01:00Z  4         stale\n" +
		"bbbb  10.0.0.2:2222  -        2026-11-30T12:00:00Z  " + now.Format(time.RFC3339) + "  1         live\n"
	if code != 0 || out != want {
		t.Errorf("gates: exit %d\n%s\nwant\n%s", code, out, want)
	}
	code, out, _ = runCLI(t, data, "", "gates", "--json")
	if code != 0 || !strings.Contains(out, `"id": "aaaa"`) || !strings.Contains(out, `"state": "stale"`) || !strings.Contains(out, `"sessions": 1`) {
		t.Errorf("gates --json: exit %d %s", code, out)
	}
	if code, _, errOut := runCLI(t, data, "", "gates", "extra"); code != ExitUsage || !strings.Contains(errOut, `unexpected argument "extra"`) {
		t.Errorf("gates extra: exit %d %q", code, errOut)
	}
}
