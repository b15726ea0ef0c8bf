package totp

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCheckCurrentAndPreviousStep(t *testing.T) {
	secret, uri, err := Generate("alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(uri, "otpauth://totp/sshgate:alice?") || !strings.Contains(uri, "secret="+secret) {
		t.Fatalf("uri = %q", uri)
	}
	if URI("alice", secret) != uri {
		t.Fatalf("URI() = %q, want %q", URI("alice", secret), uri)
	}
	now := time.Unix(1_800_000_015, 0)
	for _, c := range []struct {
		name string
		at   time.Time
		ok   bool
		step int64
	}{
		{"current", now, true, Step(now)},
		{"previous", now.Add(-Period), true, Step(now) - 1},
		{"two back", now.Add(-2 * Period), false, 0},
		{"next", now.Add(Period), false, 0},
	} {
		code, err := Code(secret, c.at)
		if err != nil {
			t.Fatal(err)
		}
		step, ok := Check(secret, code, now)
		if ok != c.ok || step != c.step {
			t.Errorf("%s: Check = %d, %v; want %d, %v", c.name, step, ok, c.step, c.ok)
		}
	}
	code, _ := Code(secret, now)
	if _, ok := Check(secret, code[:3]+" "+code[3:], now); !ok {
		t.Error("code with a space refused")
	}
	if _, ok := Check("JBSWY3DPEHPK3PXP", code, now); ok {
		t.Error("code of another secret accepted")
	}
}

func TestNormalizeCode(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"123456", "123456", true},
		{" 123 456\n", "123456", true},
		{"123-456", "123456", true},
		{"12345", "", false},
		{"1234567", "", false},
		{"12345a", "", false},
		{"１２３４５６", "", false},
		{"", "", false},
	} {
		got, ok := NormalizeCode(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("NormalizeCode(%q) = %q, %v", c.in, got, ok)
		}
	}
}

func FuzzNormalizeCode(f *testing.F) {
	for _, s := range []string{"123456", "12 34 56", "abc", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		code, ok := NormalizeCode(s)
		if !ok {
			return
		}
		if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
			t.Fatalf("NormalizeCode(%q) = %q", s, code)
		}
		_, _ = Check("JBSWY3DPEHPK3PXP", s, time.Now())
	})
}

func TestSealOpen(t *testing.T) {
	dir := t.TempDir()
	key, err := LoadKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	again, err := LoadKey(dir)
	if err != nil || !bytes.Equal(key, again) {
		t.Fatal("second LoadKey differs")
	}
	sealed, err := Seal(key, "alice", "JBSWY3DPEHPK3PXP")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "JBSWY3DPEHPK3PXP") {
		t.Fatal("secret in clear")
	}
	if s, err := Open(key, "alice", sealed); err != nil || s != "JBSWY3DPEHPK3PXP" {
		t.Fatalf("Open = %q, %v", s, err)
	}
	if _, err := Open(key, "bob", sealed); err == nil {
		t.Fatal("opened as another user")
	}
	other := make([]byte, 32)
	if _, err := Open(other, "alice", sealed); err == nil {
		t.Fatal("opened with another key")
	}
	for _, bad := range []string{"", "v1:", "v1:!!", "JBSWY3DPEHPK3PXP", sealed[:len(sealed)-4]} {
		if _, err := Open(key, "alice", bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}

func TestLoadKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], _ = LoadKey(dir)
		}()
	}
	wg.Wait()
	for _, k := range keys {
		if len(k) != 32 || !bytes.Equal(k, keys[0]) {
			t.Fatal("concurrent first uses disagree on the key")
		}
	}
}

func TestWriteQR(t *testing.T) {
	var b bytes.Buffer
	if err := WriteQR(&b, "otpauth://totp/sshgate:alice?secret=JBSWY3DPEHPK3PXP&issuer=sshgate", "\n"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) < 10 {
		t.Fatalf("%d lines", len(lines))
	}
	w := len([]rune(lines[0]))
	for _, l := range lines {
		if len([]rune(l)) != w {
			t.Fatalf("ragged QR: %d vs %d", len([]rune(l)), w)
		}
	}
	if (len(lines)-1)*2 > w+1 || !strings.Contains(b.String(), "▀") {
		t.Fatalf("not a half-block square:\n%s", b.String())
	}
}
