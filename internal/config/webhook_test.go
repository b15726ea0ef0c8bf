package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWebhookConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErrs   []string
	}{
		{"off by default", "", nil},
		{"auth webhook", "auth:\n  webhook:\n    url: https://auth.example.com/hook\n    timeout: 3s\n    retries: 1\n    mode: only\n    tls:\n      ca_file: /etc/ssl/ca.pem\n      cert_file: /c.pem\n      key_file: /k.pem\n", nil},
		{"config webhook", "config_webhook:\n  url: http://127.0.0.1:8080\n  allow:\n    images: [\"registry.example.com/dev/*\", \"alpine:3.20\"]\n    mount_sources: [/srv/shared]\n    max_memory: 536870912\n    max_cpus: 1.5\n    max_pids: 256\n", nil},
		{"bad url", "auth:\n  webhook:\n    url: ftp://x\n", []string{"auth.webhook.url:"}},
		{"credentials in url", "config_webhook:\n  url: https://u:p@x/\n", []string{"config_webhook.url:", "credentials"}},
		{"bad mode", "auth:\n  webhook:\n    url: https://x\n    mode: maybe\n", []string{"auth.webhook.mode:"}},
		{"timeout range", "auth:\n  webhook:\n    url: https://x\n    timeout: 5m\n", []string{"auth.webhook.timeout:"}},
		{"retries range", "auth:\n  webhook:\n    url: https://x\n    retries: 50\n", []string{"auth.webhook.retries:"}},
		{"cert without key", "auth:\n  webhook:\n    url: https://x\n    tls:\n      cert_file: /c.pem\n", []string{"auth.webhook.tls:"}},
		{"tls over http", "auth:\n  webhook:\n    url: http://x\n    tls:\n      ca_file: /ca.pem\n", []string{"need an https"}},
		{"any image", "config_webhook:\n  allow:\n    images: [\"*\"]\n", []string{"config_webhook.allow.images:"}},
		{"mount source not clean", "config_webhook:\n  allow:\n    mount_sources: [/srv/../etc, relative, /]\n", []string{`"/srv/../etc"`, `"relative"`, `"/"`}},
		{"negative limit", "config_webhook:\n  allow:\n    max_memory: -1\n", []string{"must not be negative"}},
		{"unknown key", "auth:\n  webhook:\n    urll: x\n", []string{"urll"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(f, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(f)
			if err == nil {
				err = c.Validate()
			}
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErrs)
			}
			for _, w := range tt.wantErrs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	d := Defaults()
	if d.Auth.Webhook.Timeout.D() != 5*time.Second || d.Auth.Webhook.Retries != 2 || d.Auth.Webhook.Mode != "fallback" || d.ConfigWebhook.Timeout.D() != 5*time.Second {
		t.Errorf("defaults %+v %+v", d.Auth.Webhook, d.ConfigWebhook)
	}
}
