package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestObsConfig(t *testing.T) {
	d := Defaults()
	if !d.Recordings.Enabled || d.Recordings.Input || d.Recordings.OnError != FailOpen || d.Metrics.Listen != "" {
		t.Errorf("defaults: %+v %+v", d.Recordings, d.Metrics)
	}
	for _, tc := range []struct {
		name, yaml, errHas string
	}{
		{"ok", "recordings:\n  enabled: false\n  dir: /var/rec\n  input: true\n  on_error: fail-closed\n  max_age: 720h\n  max_total: 10GiB\naudit:\n  file:\n    max_age: 2160h\nmetrics:\n  listen: 127.0.0.1:9100\n", ""},
		{"bad on_error", "recordings:\n  on_error: maybe\n", "recordings.on_error"},
		{"recordings max_age too short", "recordings:\n  max_age: 10m\n", "recordings.max_age"},
		{"recordings max_total too small", "recordings:\n  max_total: 1KiB\n", "recordings.max_total"},
		{"audit max_age negative", "audit:\n  file:\n    max_age: -1h\n", "audit.file.max_age"},
		{"bad listen", "metrics:\n  listen: nowhere\n", "metrics.listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(f, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			if tc.errHas == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Recordings.Enabled || !c.Recordings.Input || c.Recordings.Dir != "/var/rec" || c.Recordings.OnError != FailClosed || c.Metrics.Listen != "127.0.0.1:9100" ||
					c.Recordings.MaxAge.D() != 720*time.Hour || c.Recordings.MaxTotal != 10<<30 || c.Audit.File.MaxAge.D() != 2160*time.Hour {
					t.Errorf("loaded %+v %+v", c.Recordings, c.Metrics)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("Validate: %v, want %q", err, tc.errHas)
			}
		})
	}
}
