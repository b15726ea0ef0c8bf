package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuditConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		errs       []string
		check      func(t *testing.T, c Config)
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			a := c.Audit
			if !a.File.Enabled || a.File.Path != "audit/audit.jsonl" || a.File.MaxSize != 100<<20 || a.Failure != FailOpen || a.FailClosed("x") || a.FileHash != FileHashSHA256 {
				t.Errorf("defaults: %+v", a)
			}
		}},
		{name: "sizes and modes", yaml: "audit:\n  file:\n    max_size: 10MiB\n    max_files: 3\n  failure_by_target:\n    web-1: fail-closed\n",
			check: func(t *testing.T, c Config) {
				if c.Audit.File.MaxSize != 10<<20 || !c.Audit.FailClosed("web-1") || c.Audit.FailClosed("web-2") {
					t.Errorf("%+v", c.Audit)
				}
			}},
		{name: "plain bytes", yaml: "audit:\n  file:\n    max_size: 4096\n", check: func(t *testing.T, c Config) {
			if c.Audit.File.MaxSize != 4096 {
				t.Errorf("max_size %d", c.Audit.File.MaxSize)
			}
		}},
		{name: "no file hash", yaml: "audit:\n  file_hash: none\n", check: func(t *testing.T, c Config) {
			if c.Audit.FileHash != FileHashNone {
				t.Errorf("file_hash %q", c.Audit.FileHash)
			}
		}},
		{name: "bad", yaml: "audit:\n  failure: closed\n  failure_by_target: {a: maybe}\n  webhook: {url: 'ftp://x'}\n  queue_size: -1\n  file_hash: md5\n",
			errs: []string{"audit.failure:", "audit.failure_by_target.a:", "audit.webhook.url:", "audit.queue_size:", `audit.file_hash: "md5" is not sha256 or none`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := ""
			if tc.yaml != "" {
				file = filepath.Join(t.TempDir(), "c.yaml")
				os.WriteFile(file, []byte(tc.yaml), 0o600)
			}
			c, err := Load(file)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			for _, e := range tc.errs {
				if err == nil || !strings.Contains(err.Error(), e) {
					t.Errorf("want an error naming %s, got %v", e, err)
				}
			}
			if tc.errs == nil && err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
	if _, err := Load(writeTemp(t, "audit:\n  file:\n    max_size: lots\n")); err == nil || !strings.Contains(err.Error(), "not a size") {
		t.Errorf("bad size: %v", err)
	}
}

func writeTemp(t *testing.T, s string) string {
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte(s), 0o600)
	return f
}
