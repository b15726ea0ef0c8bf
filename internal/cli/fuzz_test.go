package cli

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512m", 512 << 20, true}, {"512M", 512 << 20, true}, {"2g", 2 << 30, true}, {"1.5g", 3 << 29, true},
		{"64k", 64 << 10, true}, {"100", 100, true}, {"1gib", 1 << 30, true}, {"7mb", 7 << 20, true},
		{"", 0, false}, {"m", 0, false}, {"-1m", 0, false}, {"0", 0, false}, {"1x", 0, false},
		{"1.2.3m", 0, false}, {"1e3m", 0, false}, {"99999t", 0, false}, {"NaN", 0, false}, {"Inf", 0, false},
	}
	for _, c := range cases {
		got, err := parseSize("--memory", c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--memory") {
			t.Errorf("parseSize(%q) error %q does not name the flag", c.in, err)
		}
	}
	for _, n := range []int64{512 << 20, 2 << 30, 64 << 10, 100, 3 << 29} {
		back, err := parseSize("x", formatSize(n))
		if err != nil || back != n {
			t.Errorf("formatSize(%d) = %q parses back to %d, %v", n, formatSize(n), back, err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512m", "1.5g", "100", "", "1e9", "-0", "0.0000001k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize("--memory", s)
		if err != nil {
			return
		}
		if n < 0 || n > 1<<50 {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
	})
}

func FuzzParseHostKeyLine(f *testing.F) {
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHIW/1KH+V5EteRb4S6n4OKZ1W025TFYFMMbq3ztZSgM root@host")
	f.Add("[10.0.0.2]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHIW/1KH+V5EteRb4S6n4OKZ1W025TFYFMMbq3ztZSgM")
	f.Add("@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHIW/1KH+V5EteRb4S6n4OKZ1W025TFYFMMbq3ztZSgM")
	f.Add("from=\"x\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHIW/1KH+V5EteRb4S6n4OKZ1W025TFYFMMbq3ztZSgM")
	f.Add("")
	f.Fuzz(func(t *testing.T, line string) {
		k, err := parseHostKeyLine(line)
		if err != nil {
			return
		}
		if _, ok := k.(*ssh.Certificate); ok {
			t.Fatalf("parseHostKeyLine(%q) accepted a certificate", line)
		}
		if _, err := ssh.ParsePublicKey(k.Marshal()); err != nil {
			t.Fatalf("parseHostKeyLine(%q) returned a key that does not round-trip: %v", line, err)
		}
	})
}

func FuzzReadKeys(f *testing.F) {
	f.Add("# c\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHIW/1KH+V5EteRb4S6n4OKZ1W025TFYFMMbq3ztZSgM a b\n")
	f.Add("garbage\n")
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := readKeys(strings.NewReader(s), "f")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f") {
				t.Fatalf("readKeys error %q does not name the file", err)
			}
			return
		}
		for _, k := range keys {
			if !strings.HasPrefix(k.key.Fingerprint, "SHA256:") || k.line < 1 {
				t.Fatalf("readKeys gave %+v", k)
			}
		}
	})
}
