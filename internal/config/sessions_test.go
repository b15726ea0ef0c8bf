package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSessionsValidate(t *testing.T) {
	for _, tt := range []struct {
		s    Sessions
		want []string
	}{
		{Sessions{}, nil},
		{Sessions{MaxSession: Duration(8 * time.Hour), IdleTimeout: Duration(15 * time.Minute)}, nil},
		{Sessions{MaxSession: Duration(-time.Second)}, []string{"sessions.max_session: -1s is out of range"}},
		{Sessions{IdleTimeout: Duration(time.Millisecond)}, []string{"sessions.idle_timeout: 1ms is out of range"}},
	} {
		errs := tt.s.validate()
		if len(errs) != len(tt.want) {
			t.Fatalf("%+v: %v, want %v", tt.s, errs, tt.want)
		}
		for i, e := range errs {
			if !strings.Contains(e.Error(), tt.want[i]) {
				t.Errorf("%+v: %v, want %q", tt.s, e, tt.want[i])
			}
		}
	}
}

func TestSessionsYAML(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sshgate.yaml")
	if err := os.WriteFile(f, []byte("sessions:\n  max_session: 8h\n  idle_timeout: 15m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sessions.MaxSession.D() != 8*time.Hour || c.Sessions.IdleTimeout.D() != 15*time.Minute {
		t.Fatalf("sessions %+v", c.Sessions)
	}
}
