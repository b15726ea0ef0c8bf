package recording

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
	"unicode/utf8"
)

// PasswordsFile is the honeypot log in the recordings directory.
const PasswordsFile = "honeypot-passwords.jsonl"

// PasswordAttempt is one line of the honeypot log.
type PasswordAttempt struct {
	Time     time.Time `json:"time"`
	User     string    `json:"user"`     // the SSH user name as sent
	Remote   string    `json:"remote"`   // client address
	Client   string    `json:"client"`   // client version string
	Password string    `json:"password"` // as tried (invalid UTF-8 becomes U+FFFD)
}

// PasswordLog appends failed password attempts to PasswordsFile, for a
// gate deployed as a honeypot. Record never blocks: a full queue drops.
type PasswordLog struct {
	ch      chan PasswordAttempt
	done    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	closed  bool
	onError func(error)
}

// OpenPasswordLog opens (creating, 0600, appending) the honeypot log in d.
// onError, if set, hears of write errors (once per error).
func (d *Dir) OpenPasswordLog(onError func(error)) (*PasswordLog, error) {
	f, err := d.root.OpenFile(PasswordsFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open honeypot password log: %w", err)
	}
	l := &PasswordLog{ch: make(chan PasswordAttempt, 1024), done: make(chan struct{}), onError: onError}
	go func() {
		defer close(l.done)
		defer f.Close()
		for a := range l.ch {
			if _, err := f.Write(encodeAttempt(a)); err != nil && l.onError != nil {
				l.onError(fmt.Errorf("write honeypot password log: %w", err))
			}
		}
	}()
	return l, nil
}

// Record queues one attempt.
func (l *PasswordLog) Record(a PasswordAttempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	select {
	case l.ch <- a:
	default:
	}
}

// Close writes what is queued and closes the file.
func (l *PasswordLog) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.ch)
	}
	l.mu.Unlock()
	<-l.done
	return nil
}

// encodeAttempt is one JSON line with every control character escaped,
// C1 and DEL included (encoding/json leaves those raw), so that reading the
// file in a terminal is safe.
func encodeAttempt(a PasswordAttempt) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(a)
	out := make([]byte, 0, b.Len())
	for p := b.Bytes(); len(p) > 0; {
		r, n := utf8.DecodeRune(p)
		if r == 0x7f || r >= 0x80 && r <= 0x9f {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, p[:n]...)
		}
		p = p[n:]
	}
	return out
}
