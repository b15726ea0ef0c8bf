// Package passwd hashes and verifies user passwords: argon2id in the PHC
// string format for new hashes, and bcrypt hashes ($2a$, $2b$, $2y$) for
// verification only, so operators can import existing accounts.
//
// Every verification costs about the same time whether the user exists, has
// a password, or gave the right one: callers use VerifyDummy for unknown
// users, and Verify burns the same time on an empty or unusable stored hash.
// Stored hashes with absurd parameters are refused, never computed.
//
// Must not import: any project package
package passwd

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // iterations
	Threads uint8
}

// Default is what Hash uses: about 80 ms on the 2-core build machine
// (measured 83 ms for m=64 MiB, t=3, p=2), and 64 MiB per verification.
var Default = Params{Memory: 64 * 1024, Time: 3, Threads: 2}

// Limits on parameters read from a stored hash.
const (
	MaxMemory     = 1 << 20 // KiB: 1 GiB
	MaxTime       = 20
	MaxThreads    = 64
	MaxWork       = 2 << 20 // KiB x passes: 2 GiB-passes, about 11x Default
	MaxBcryptCost = 14      // about 1 s
	saltLen       = 16
	keyLen        = 32
	minSalt       = 8
	maxSalt       = 64
	minKey        = 16
	maxKey        = 64
	argonVersion  = argon2.Version // 0x13 = 19
)

// ErrEmpty is returned by Hash for an empty password.
var ErrEmpty = errors.New("empty password")

var b64 = base64.RawStdEncoding.Strict()

// Hash returns the argon2id PHC string of pw with Default parameters and a
// fresh random salt.
func Hash(pw []byte) (string, error) {
	if len(pw) == 0 {
		return "", ErrEmpty
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	h := phc{Params: Default, Salt: salt}
	h.Key = argon2.IDKey(pw, salt, h.Time, h.Memory, h.Threads, keyLen)
	return h.String(), nil
}

// phc is a parsed argon2id PHC string.
type phc struct {
	Params
	Salt []byte
	Key  []byte
}

func (h phc) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argonVersion, h.Memory, h.Time, h.Threads, b64.EncodeToString(h.Salt), b64.EncodeToString(h.Key))
}

// parsePHC parses an argon2id PHC string strictly: the canonical form Hash
// writes, with parameters within the limits. It names the problem.
func parsePHC(s string) (phc, error) {
	var h phc
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return h, errors.New("not a PHC string of 5 fields")
	}
	if parts[1] != "argon2id" {
		return h, fmt.Errorf("algorithm %q is not argon2id", parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argonVersion) {
		return h, fmt.Errorf("version %q is not v=%d", parts[2], argonVersion)
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return h, fmt.Errorf("parameters %q: want m=,t=,p=", parts[3])
	}
	num := func(field, prefix string, max uint64) (uint64, error) {
		v, ok := strings.CutPrefix(field, prefix)
		if !ok {
			return 0, fmt.Errorf("parameter %q: want %s...", field, prefix)
		}
		if v == "" || (len(v) > 1 && v[0] == '0') || v[0] == '+' {
			return 0, fmt.Errorf("parameter %q is not a canonical number", field)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("parameter %q is not a number", field)
		}
		if n == 0 || n > max {
			return 0, fmt.Errorf("parameter %q is out of range (1..%d)", field, max)
		}
		return n, nil
	}
	m, err := num(params[0], "m=", MaxMemory)
	if err != nil {
		return h, err
	}
	t, err := num(params[1], "t=", MaxTime)
	if err != nil {
		return h, err
	}
	p, err := num(params[2], "p=", MaxThreads)
	if err != nil {
		return h, err
	}
	if m*t > MaxWork {
		return h, fmt.Errorf("cost m=%d,t=%d is above %d KiB-passes", m, t, MaxWork)
	}
	if m < 8*p {
		return h, fmt.Errorf("memory %d KiB is below 8 KiB per thread (%d threads)", m, p)
	}
	h.Params = Params{Memory: uint32(m), Time: uint32(t), Threads: uint8(p)}
	// The decoder skips CR and LF; a canonical hash has none.
	if strings.ContainsAny(parts[4]+parts[5], "\r\n") {
		return h, errors.New("line break inside salt or hash")
	}
	if h.Salt, err = b64.DecodeString(parts[4]); err != nil {
		return h, errors.New("salt is not unpadded base64")
	}
	if len(h.Salt) < minSalt || len(h.Salt) > maxSalt {
		return h, fmt.Errorf("salt of %d bytes (want %d..%d)", len(h.Salt), minSalt, maxSalt)
	}
	if h.Key, err = b64.DecodeString(parts[5]); err != nil {
		return h, errors.New("hash is not unpadded base64")
	}
	if len(h.Key) < minKey || len(h.Key) > maxKey {
		return h, fmt.Errorf("hash of %d bytes (want %d..%d)", len(h.Key), minKey, maxKey)
	}
	return h, nil
}

func isBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// Check says whether a stored hash is one Verify can use, naming the problem
// if not. Operators importing hashes use it to refuse bad ones up front.
func Check(stored string) error {
	if isBcrypt(stored) {
		cost, err := bcrypt.Cost([]byte(stored))
		if err != nil {
			return fmt.Errorf("bcrypt hash: %w", err)
		}
		if cost > MaxBcryptCost {
			return fmt.Errorf("bcrypt cost %d is above %d", cost, MaxBcryptCost)
		}
		return nil
	}
	_, err := parsePHC(stored)
	return err
}

// Verify reports whether pw matches the stored hash (argon2id PHC or
// bcrypt). An empty, unparseable or refused hash, or an empty password,
// costs the same time as a real check and returns false.
func Verify(stored string, pw []byte) bool {
	if isBcrypt(stored) {
		if Check(stored) != nil || len(pw) == 0 {
			VerifyDummy(pw)
			return false
		}
		return bcrypt.CompareHashAndPassword([]byte(stored), pw) == nil
	}
	h, err := parsePHC(stored)
	if err != nil || len(pw) == 0 {
		VerifyDummy(pw)
		return false
	}
	return h.matches(pw)
}

func (h phc) matches(pw []byte) bool {
	got := argon2.IDKey(pw, h.Salt, h.Time, h.Memory, h.Threads, uint32(len(h.Key)))
	return subtle.ConstantTimeCompare(got, h.Key) == 1
}

// dummy has Default parameters and a random salt and key: checking against it
// costs what checking a real hash costs, and never matches.
var dummy = func() phc {
	b := make([]byte, saltLen+keyLen)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return phc{Params: Default, Salt: b[:saltLen], Key: b[saltLen:]}
}()

// VerifyDummy burns the time of a Verify against a Default-parameter hash.
// Call it for unknown users so that no timing tells them apart.
func VerifyDummy(pw []byte) {
	dummy.matches(pw)
}

// NeedsRehash says whether a stored hash should be replaced by Hash's at the
// next successful login: bcrypt, or argon2id with other parameters.
func NeedsRehash(stored string) bool {
	h, err := parsePHC(stored)
	return err != nil || h.Params != Default || len(h.Key) != keyLen
}
