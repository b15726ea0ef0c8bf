package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProxyProtocolConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		errs       []string
	}{
		{"off", "", nil},
		{"trusted", "ssh:\n  proxy_protocol:\n    trusted: [127.0.0.1/32, 10.0.0.0/8, \"::1\", 192.168.1.7]\n", nil},
		{"every key", "ssh:\n  proxy_protocol:\n    trusted: [10.1.2.0/24]\n    required: false\n    header_timeout: 2s\n", nil},
		{"bad prefix", "ssh:\n  proxy_protocol:\n    trusted: [10.0.0.0/33, lb.example]\n",
			[]string{`ssh.proxy_protocol.trusted: "10.0.0.0/33"`, `ssh.proxy_protocol.trusted: "lb.example"`}},
		{"timeout", "ssh:\n  proxy_protocol:\n    trusted: [10.0.0.1]\n    header_timeout: 1h\n", []string{"ssh.proxy_protocol.header_timeout: 1h0m0s is out of range"}},
		{"keys without trusted", "ssh:\n  proxy_protocol:\n    required: true\n", []string{"ssh.proxy_protocol: required and header_timeout need trusted"}},
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
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.errs)
			}
			for _, w := range tc.errs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestProxyProtocolDefaults(t *testing.T) {
	p := ProxyProtocol{Trusted: []string{"10.0.0.0/8", "127.0.0.1", "::ffff:10.1.1.1"}}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.1.1.1/32")}
	got := p.Prefixes()
	if len(got) != len(want) {
		t.Fatalf("Prefixes = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Prefixes[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if !p.HeaderRequired() || p.Timeout() != 5*time.Second {
		t.Errorf("defaults: required %v timeout %v", p.HeaderRequired(), p.Timeout())
	}
	f := false
	p.Required, p.HeaderTimeout = &f, Duration(time.Second)
	if p.HeaderRequired() || p.Timeout() != time.Second {
		t.Errorf("set: required %v timeout %v", p.HeaderRequired(), p.Timeout())
	}
}
