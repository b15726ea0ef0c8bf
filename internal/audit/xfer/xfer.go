// Package xfer turns the decrypted data of a session channel into file
// audit events: SFTP (also scp's default mode), the legacy scp protocol
// (scp -O), FISH (lftp, Midnight Commander) and rsync (from its server
// command line). Every parser reads untrusted bytes: memory is bounded,
// nothing panics, and a stream it cannot follow makes it stop quietly (the
// session is still audited as a session). It imports only audit.
//
// Must not import: broker relay sshd/... store/... target/... auth/... policy app audit/recording
package xfer

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strings"
	"sync"

	"github.com/sshgate/sshgate/internal/audit"
)

// Emit receives a file event with Type, Protocol, Op, Path and what else the
// parser knows; the caller adds the connection and session fields.
type Emit func(audit.Event)

// Parser follows one session channel. ToTarget gets the user's data (client
// to server), ToUser the target's stdout. End is called once when the session
// is over, with whether it exited 0. The methods are not safe for concurrent
// use: Session serialises them.
type Parser interface {
	ToTarget(p []byte)
	ToUser(p []byte)
	End(ok bool)
}

// Options set what the parsers compute.
type Options struct {
	// NoHash leaves out the sha256 of files (audit.file_hash: none): events
	// keep their sizes, paths and results, and file data is only counted.
	NoHash bool
}

// For returns the parser for a session started with start ("exec" with its
// command, or "subsystem" with its name), or nil when the session carries no
// file protocol the gate understands.
func For(start, arg string, emit Emit, opt Options) Parser {
	switch start {
	case "subsystem":
		if arg == "sftp" {
			p := NewSFTP(emit)
			p.noHash = opt.NoHash
			return p
		}
	case "exec":
		if p := NewSCP(arg, emit); p != nil {
			p.noHash = opt.NoHash
			return p
		}
		if p := NewRsync(arg, emit); p != nil {
			return p
		}
		if IsFISH(arg) {
			p := NewFISH(emit)
			p.noHash = opt.NoHash
			return p
		}
	}
	return nil
}

// newHash is a file's sha256, or nil without hashes.
func newHash(off bool) hash.Hash {
	if off {
		return nil
	}
	return sha256.New()
}

// sum is h's hex digest, or "" for no hash.
func sum(h hash.Hash) string {
	if h == nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// emptySum is the digest of an empty file, or "" without hashes.
func emptySum(off bool) string { return sum(newHash(off)) }

// Session wraps a Parser for concurrent use from the relay's two copiers.
// A parser that panics (a bug on input nobody foresaw) is dropped, not
// allowed to take the gate down: the session goes on unaudited from there,
// and OnFault, when set, hears of it once.
type Session struct {
	mu    sync.Mutex
	p     Parser
	ended bool
	// OnFault is called (under the lock) with the panic's value.
	OnFault func(v any)
}

// NewSession wraps p (which must not be nil).
func NewSession(p Parser) *Session { return &Session{p: p} }

// guard runs f on the parser unless it ended, and ends it if f panics.
func (s *Session) guard(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			s.ended = true
			if s.OnFault != nil {
				s.OnFault(v)
			}
		}
	}()
	f()
}

func (s *Session) ToTarget(b []byte) { s.guard(func() { s.p.ToTarget(b) }) }

func (s *Session) ToUser(b []byte) { s.guard(func() { s.p.ToUser(b) }) }

// End ends the parser once; later data is ignored.
func (s *Session) End(ok bool) {
	s.guard(func() {
		s.ended = true
		s.p.End(ok)
	})
}

func result(ok bool) string {
	if ok {
		return "ok"
	}
	return "failed"
}

// shellWords splits a command line as a POSIX shell would, without any
// expansion: quotes and backslashes only. ok is false for anything else
// (unterminated quotes).
func shellWords(s string) (words []string, ok bool) {
	var cur strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\\':
			if i+1 >= len(s) {
				return nil, false
			}
			i++
			cur.WriteByte(s[i])
			in = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, false
			}
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, true
}
