// Package totp is the TOTP second factor's mechanics (RFC 6238 through
// github.com/pquerna/otp): new secrets and their otpauth URI, checking a code
// against the current and the previous time step, sealing secrets at rest
// with a key kept in the data directory, and drawing the URI as a QR code in
// a terminal. Replay protection (a step accepted once per user) is the
// store's UseTOTPStep; throttling is package penalty's.
//
// Must not import: any project package
package totp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/boombuler/barcode/qr"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// Period is the time step.
const Period = 30 * time.Second

// Issuer names the gate in authenticator apps.
const Issuer = "sshgate"

// Generate makes a new random secret (160 bits, base32) for account and its
// otpauth:// URI.
func Generate(account string) (secret, uri string, err error) {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: Issuer, AccountName: account})
	if err != nil {
		return "", "", fmt.Errorf("generate totp secret: %w", err)
	}
	return k.Secret(), k.URL(), nil
}

// URI is the otpauth:// URI of an existing secret.
func URI(account, secret string) string {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: Issuer, AccountName: account,
		Secret: mustBase32(secret)})
	if err != nil {
		return ""
	}
	return k.URL()
}

func mustBase32(s string) []byte {
	b, err := b32.DecodeString(strings.ToUpper(s))
	if err != nil {
		return nil
	}
	return b
}

// Step is the time step of t.
func Step(t time.Time) int64 { return t.Unix() / int64(Period/time.Second) }

// NormalizeCode reads a code as typed: six ASCII digits, spaces and a
// hyphen in between allowed ("123 456"). ok is false for anything else.
func NormalizeCode(s string) (code string, ok bool) {
	if len(s) > 32 {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == ' ' || c == '-' || c == '\t' || c == '\r' || c == '\n':
		default:
			return "", false
		}
	}
	if b.Len() != 6 {
		return "", false
	}
	return b.String(), true
}

var opts = hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// Check reports whether code is valid for secret at now, in the current or
// the previous step, and which step it belongs to (the caller records it so
// that the code is never accepted again).
func Check(secret, code string, now time.Time) (step int64, ok bool) {
	code, ok = NormalizeCode(code)
	if !ok {
		return 0, false
	}
	cur := Step(now)
	for _, s := range []int64{cur, cur - 1} {
		if s < 0 {
			continue
		}
		if v, err := hotp.ValidateCustom(code, uint64(s), secret, opts); err == nil && v {
			return s, true
		}
	}
	return 0, false
}

// Code is the code of secret at t (for tests and tools).
func Code(secret string, t time.Time) (string, error) {
	return hotp.GenerateCodeCustom(secret, uint64(Step(t)), opts)
}

// ---- sealing secrets at rest ----

// KeyFile is the name of the sealing key in the data directory.
const KeyFile = "totp_key"

// LoadKey reads DIR/totp_key, creating it (32 random bytes, mode 0600) on
// first use. Concurrent first uses (the gate and the CLI) agree on one key.
func LoadKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, KeyFile)
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) != 32 {
			return nil, fmt.Errorf("totp key %s: want 32 bytes, have %d", path, len(key))
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read totp key: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("create totp key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".totp_key-*")
	if err != nil {
		return nil, fmt.Errorf("create totp key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create totp key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("create totp key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won: use its key
			return LoadKey(dir)
		}
		return nil, fmt.Errorf("create totp key: %w", err)
	}
	return key, nil
}

const sealPrefix = "v1:"

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Seal encrypts secret with key (AES-256-GCM), bound to user so that a sealed
// secret copied onto another user's row does not open.
func Seal(key []byte, user, secret string) (string, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal totp secret: %w", err)
	}
	ct := aead.Seal(nonce, nonce, []byte(secret), []byte(user))
	return sealPrefix + base64.RawStdEncoding.EncodeToString(ct), nil
}

// Open decrypts what Seal made.
func Open(key []byte, user, sealed string) (string, error) {
	raw, ok := strings.CutPrefix(sealed, sealPrefix)
	if !ok {
		return "", errors.New("open totp secret: unknown format")
	}
	ct, err := base64.RawStdEncoding.DecodeString(raw)
	if err != nil {
		return "", errors.New("open totp secret: bad encoding")
	}
	aead, err := newAEAD(key)
	if err != nil {
		return "", err
	}
	if len(ct) < aead.NonceSize() {
		return "", errors.New("open totp secret: too short")
	}
	pt, err := aead.Open(nil, ct[:aead.NonceSize()], ct[aead.NonceSize():], []byte(user))
	if err != nil {
		return "", errors.New("open totp secret: wrong key or damaged")
	}
	return string(pt), nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("totp key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("totp key: %w", err)
	}
	return aead, nil
}

// ---- QR code ----

// WriteQR draws content as a QR code with half-block characters, two
// modules per character cell, light modules as full blocks so that it scans
// on a dark terminal; newline is "\n" or "\r\n" (a PTY in raw mode).
func WriteQR(w io.Writer, content, newline string) error {
	code, err := qr.Encode(content, qr.M, qr.Auto)
	if err != nil {
		return fmt.Errorf("encode qr: %w", err)
	}
	const quiet = 2
	n := code.Bounds().Dx()
	dark := func(x, y int) bool {
		x, y = x-quiet, y-quiet
		if x < 0 || y < 0 || x >= n || y >= n {
			return false
		}
		r, _, _, _ := code.At(x, y).RGBA()
		return r < 0x8000
	}
	var b strings.Builder
	size := n + 2*quiet
	for y := 0; y < size; y += 2 {
		for x := 0; x < size; x++ {
			top, bottom := !dark(x, y), y+1 < size && !dark(x, y+1)
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteString(newline)
	}
	_, err = io.WriteString(w, b.String())
	return err
}
