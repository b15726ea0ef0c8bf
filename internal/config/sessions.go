package config

import "fmt"

// Sessions are the gate-wide defaults of the per-grant session limits
// (`sshgate grant --max-session/--idle-timeout` override them per grant).
type Sessions struct {
	// MaxSession ends a target session this long after it started; 0: no limit.
	MaxSession Duration `yaml:"max_session"`
	// IdleTimeout ends a target session with no input from the user for
	// this long; 0: no limit.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

func (s Sessions) validate() []error {
	var errs []error
	for _, f := range []struct {
		name string
		d    Duration
	}{{"sessions.max_session", s.MaxSession}, {"sessions.idle_timeout", s.IdleTimeout}} {
		if d := f.d.D(); d < 0 || (d > 0 && d.Seconds() < 1) {
			errs = append(errs, fmt.Errorf("%s: %s is out of range (0 for no limit, or at least 1s)", f.name, d))
		}
	}
	return errs
}
