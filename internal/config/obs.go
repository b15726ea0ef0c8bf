package config

import (
	"fmt"
	"strings"
	"time"
)

// Recordings configures the asciicast recordings of PTY sessions.
type Recordings struct {
	Enabled bool   `yaml:"enabled"` // record PTY sessions (default true)
	Dir     string `yaml:"dir"`     // default DATA/recordings; a relative path is under the data directory
	Input   bool   `yaml:"input"`   // also record what users type (default false: input holds passwords)
	// OnError is what a session does when its recording cannot be created
	// or written: "fail-open" (go on unrecorded, logged and counted) or
	// "fail-closed" (refuse the session, or end it with a message).
	OnError string `yaml:"on_error"`
	// HoneypotPasswords appends every failed password attempt (user,
	// address, client, the password itself) to DIR/honeypot-passwords.jsonl.
	// Only for a gate deployed as a honeypot: a real user's typo is kept too.
	HoneypotPasswords bool `yaml:"honeypot_passwords"`
	// MaxAge and MaxTotal bound what the directory keeps: finished
	// recordings last written longer ago than MaxAge are removed, then the
	// oldest until all fit in MaxTotal bytes. 0: no bound.
	MaxAge   Duration `yaml:"max_age"`
	MaxTotal Size     `yaml:"max_total"`
}

// Metrics configures the metrics and health listener.
type Metrics struct {
	Listen string `yaml:"listen"` // HOST:PORT for /metrics, /healthz, /readyz; empty: off
}

func defaultRecordings() Recordings {
	return Recordings{Enabled: true, OnError: FailOpen}
}

func (c Config) validateObs() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch c.Recordings.OnError {
	case FailOpen, FailClosed:
	default:
		bad("recordings.on_error", "%q is not %s or %s", c.Recordings.OnError, FailOpen, FailClosed)
	}
	if strings.ContainsRune(c.Recordings.Dir, 0) {
		bad("recordings.dir", "%q is not a path", c.Recordings.Dir)
	}
	if d := c.Recordings.MaxAge.D(); d < 0 || d > 0 && d < time.Hour {
		bad("recordings.max_age", "%s is out of range (0, or at least 1h)", d)
	}
	if c.Recordings.MaxTotal < 0 || c.Recordings.MaxTotal > 0 && c.Recordings.MaxTotal < 1<<20 {
		bad("recordings.max_total", "%d is out of range (0, or at least 1MiB)", c.Recordings.MaxTotal)
	}
	if c.Metrics.Listen != "" {
		if msg := checkListen(c.Metrics.Listen); msg != "" {
			bad("metrics.listen", "%s", msg)
		}
	}
	return errs
}
