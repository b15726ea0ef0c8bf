package passwd

import (
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

func TestHashVerify(t *testing.T) {
	h, err := Hash([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("Hash = %q, want the argon2id PHC form with default parameters", h)
	}
	h2, err := Hash([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	if err := Check(h); err != nil {
		t.Fatalf("Check(own hash): %v", err)
	}
	if NeedsRehash(h) {
		t.Error("NeedsRehash(own hash) = true")
	}
	cases := []struct {
		pw   string
		want bool
	}{
		{"correct horse", true},
		{"correct horsE", false},
		{"correct horse ", false},
		{"", false},
		{"x", false},
	}
	for _, c := range cases {
		if got := Verify(h, []byte(c.pw)); got != c.want {
			t.Errorf("Verify(%q) = %v, want %v", c.pw, got, c.want)
		}
	}
	if _, err := Hash(nil); err != ErrEmpty {
		t.Errorf("Hash(empty) = %v, want ErrEmpty", err)
	}
}

// A hash made with other (cheap) parameters still verifies, and is due for
// a rehash.
func TestVerifyOtherParams(t *testing.T) {
	h := phc{Params: Params{Memory: 64, Time: 1, Threads: 1}, Salt: []byte("saltsalt")}
	h.Key = argon2.IDKey([]byte("pw"), h.Salt, h.Time, h.Memory, h.Threads, 16)
	s := h.String()
	if !Verify(s, []byte("pw")) {
		t.Fatalf("Verify(%s) = false", s)
	}
	if Verify(s, []byte("pw2")) {
		t.Fatal("Verify with a wrong password = true")
	}
	if !NeedsRehash(s) {
		t.Error("NeedsRehash(cheap hash) = false")
	}
}

func TestBcrypt(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		s := prefix + string(b[4:])
		if err := Check(s); err != nil {
			t.Errorf("Check(%s...): %v", prefix, err)
		}
		if !Verify(s, []byte("s3cret")) {
			t.Errorf("Verify(%s..., right) = false", prefix)
		}
		if Verify(s, []byte("s3cre")) {
			t.Errorf("Verify(%s..., wrong) = true", prefix)
		}
		if Verify(s, nil) {
			t.Errorf("Verify(%s..., empty) = true", prefix)
		}
		if !NeedsRehash(s) {
			t.Errorf("NeedsRehash(bcrypt) = false")
		}
	}
	b15, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b15 = append([]byte("$2a$15$"), b15[7:]...)
	if err := Check(string(b15)); err == nil || !strings.Contains(err.Error(), "cost 15") {
		t.Errorf("Check(cost 15) = %v, want a refusal naming the cost", err)
	}
	// Cost 31 would run for days: refused, not computed.
	absurd := "$2b$31$" + string(b[7:])
	if err := Check(absurd); err == nil || !strings.Contains(err.Error(), "cost 31") {
		t.Errorf("Check(cost 31) = %v, want a refusal naming the cost", err)
	}
	if Verify(absurd, []byte("s3cret")) {
		t.Error("Verify(cost 31) = true")
	}
}

func TestRefused(t *testing.T) {
	const salt, key = "c2FsdHNhbHRzYWx0c2FsdA", "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"
	cases := []struct {
		name, s, msg string
	}{
		{"empty", "", "5 fields"},
		{"plain text", "hunter2", "5 fields"},
		{"argon2i", "$argon2i$v=19$m=65536,t=3,p=2$" + salt + "$" + key, "not argon2id"},
		{"old version", "$argon2id$v=16$m=65536,t=3,p=2$" + salt + "$" + key, "version"},
		{"no version", "$argon2id$m=65536,t=3,p=2$" + salt + "$" + key, "5 fields"},
		{"memory above 1 GiB", "$argon2id$v=19$m=1048577,t=3,p=2$" + salt + "$" + key, "m=1048577"},
		{"memory huge", "$argon2id$v=19$m=4294967295,t=3,p=2$" + salt + "$" + key, "m=4294967295"},
		{"time above 20", "$argon2id$v=19$m=65536,t=21,p=2$" + salt + "$" + key, "t=21"},
		{"zero time", "$argon2id$v=19$m=65536,t=0,p=2$" + salt + "$" + key, "t=0"},
		{"zero threads", "$argon2id$v=19$m=65536,t=3,p=0$" + salt + "$" + key, "p=0"},
		{"too many threads", "$argon2id$v=19$m=65536,t=3,p=255$" + salt + "$" + key, "p=255"},
		{"memory and time together", "$argon2id$v=19$m=1048576,t=3,p=2$" + salt + "$" + key, "cost m=1048576,t=3"},
		{"memory below 8p", "$argon2id$v=19$m=8,t=3,p=2$" + salt + "$" + key, "8 KiB per thread"},
		{"params order", "$argon2id$v=19$t=3,m=65536,p=2$" + salt + "$" + key, "t=3"},
		{"leading zero", "$argon2id$v=19$m=065536,t=3,p=2$" + salt + "$" + key, "canonical"},
		{"sign", "$argon2id$v=19$m=+65536,t=3,p=2$" + salt + "$" + key, "canonical"},
		{"extra param", "$argon2id$v=19$m=65536,t=3,p=2,k=1$" + salt + "$" + key, "want m=,t=,p="},
		{"padded salt", "$argon2id$v=19$m=65536,t=3,p=2$" + salt + "==$" + key, "salt"},
		{"short salt", "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$" + key, "salt of 4 bytes"},
		{"short hash", "$argon2id$v=19$m=65536,t=3,p=2$" + salt + "$a2V5", "hash of 3 bytes"},
		{"bad base64", "$argon2id$v=19$m=65536,t=3,p=2$" + salt + "$!!!!", "base64"},
		{"line break in salt", "$argon2id$v=19$m=65536,t=3,p=2$c2Fsd\nHNhbHRzYWx0c2FsdA$" + key, "line break"},
		{"trailing field", "$argon2id$v=19$m=65536,t=3,p=2$" + salt + "$" + key + "$", "5 fields"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Check(c.s)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("Check(%q) = %v, want an error containing %q", c.s, err, c.msg)
			}
			if c.name != "memory huge" && c.name != "time above 20" && c.name != "empty" {
				return // Verify of a refused hash is VerifyDummy: checked for a few
			}
			if Verify(c.s, []byte("pw")) {
				t.Fatalf("Verify(%q) = true", c.s)
			}
		})
	}
}

func TestVerifyDummyNeverPanics(t *testing.T) {
	VerifyDummy(nil)
	VerifyDummy([]byte("anything"))
	if dummy.Params != Default || len(dummy.Key) != keyLen {
		t.Fatalf("dummy hash %+v does not cost what a default hash costs", dummy.Params)
	}
}

func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw")
	f.Add("$argon2id$v=19$m=1048577,t=3,p=2$$")
	f.Add("$2b$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePHC(s)
		if err != nil {
			return
		}
		if h.Memory > MaxMemory || h.Time > MaxTime || h.Threads > MaxThreads || h.Time == 0 || h.Threads == 0 || uint64(h.Memory)*uint64(h.Time) > MaxWork {
			t.Fatalf("parsePHC(%q) accepted out-of-range %+v", s, h.Params)
		}
		if len(h.Salt) < minSalt || len(h.Key) < minKey {
			t.Fatalf("parsePHC(%q) accepted short salt or key", s)
		}
		// Accepted strings are canonical: they re-encode to themselves.
		if got := h.String(); got != s {
			t.Fatalf("parsePHC(%q) re-encodes to %q", s, got)
		}
	})
}

func BenchmarkHash(b *testing.B) {
	for b.Loop() {
		if _, err := Hash([]byte("correct horse")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyDummy(b *testing.B) {
	for b.Loop() {
		VerifyDummy([]byte("correct horse"))
	}
}
