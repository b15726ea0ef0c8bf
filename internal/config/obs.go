package config

import (
	"fmt"
	"strings"
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
	if c.Metrics.Listen != "" {
		if msg := checkListen(c.Metrics.Listen); msg != "" {
			bad("metrics.listen", "%s", msg)
		}
	}
	return errs
}
