package recording

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

func TestPrune(t *testing.T) {
	now := time.Now()
	setup := func(t *testing.T) (*Dir, string) {
		t.Helper()
		path := t.TempDir()
		d, err := OpenDir(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		// a..d, 1 KiB each, a the oldest; one file that is not a recording.
		for i, name := range []string{"a", "b", "c", "d"} {
			p := filepath.Join(path, name+".cast")
			if err := os.WriteFile(p, make([]byte, 1024), 0o600); err != nil {
				t.Fatal(err)
			}
			mod := now.Add(-time.Duration(4-i) * 24 * time.Hour)
			if err := os.Chtimes(p, mod, mod); err != nil {
				t.Fatal(err)
			}
		}
		old := filepath.Join(path, "honeypot-passwords.jsonl")
		os.WriteFile(old, []byte("x\n"), 0o600)
		os.Chtimes(old, now.Add(-100*24*time.Hour), now.Add(-100*24*time.Hour))
		return d, path
	}
	left := func(t *testing.T, path string) []string {
		t.Helper()
		es, _ := os.ReadDir(path)
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		sort.Strings(out)
		return out
	}
	tests := []struct {
		name    string
		keep    Retention
		removed int
		want    []string
	}{
		{"no bounds keep everything", Retention{}, 0, []string{"a.cast", "b.cast", "c.cast", "d.cast", "honeypot-passwords.jsonl"}},
		{"by age", Retention{MaxAge: 50 * time.Hour}, 2, []string{"c.cast", "d.cast", "honeypot-passwords.jsonl"}},
		{"by total, oldest first", Retention{MaxTotal: 2048}, 2, []string{"c.cast", "d.cast", "honeypot-passwords.jsonl"}},
		{"both", Retention{MaxAge: 80 * time.Hour, MaxTotal: 1024}, 3, []string{"d.cast", "honeypot-passwords.jsonl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, path := setup(t)
			res, err := d.Prune(now, tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			if res.Removed != tt.removed || res.Freed != int64(tt.removed)*1024 {
				t.Errorf("removed %d (%d bytes), want %d", res.Removed, res.Freed, tt.removed)
			}
			if got := left(t, path); !equal(got, tt.want) {
				t.Errorf("left %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("a recording being written is never removed", func(t *testing.T) {
		d, path := setup(t)
		rec, err := d.Create("live", Header{Width: 80, Height: 24}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(path, "live.cast")
		os.Chtimes(p, now.Add(-1000*time.Hour), now.Add(-1000*time.Hour))
		res, err := d.Prune(now, Retention{MaxAge: time.Hour, MaxTotal: 1 << 20})
		if err != nil || res.Removed != 4 {
			t.Fatalf("removed %d, %v; want the 4 finished ones", res.Removed, err)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the live recording was removed: %v", err)
		}
		rec.Close()
		os.Chtimes(p, now.Add(-1000*time.Hour), now.Add(-1000*time.Hour))
		if res, _ := d.Prune(now, Retention{MaxAge: time.Hour}); res.Removed != 1 {
			t.Fatalf("the finished recording was kept: removed %d", res.Removed)
		}
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
