package config

import (
	"fmt"
	"time"
)

// Menu configures the account menu (a PTY session with no target).
type Menu struct {
	// AfterSession is what happens when a session opened from the menu
	// ends: "menu" (back to the menu) or "disconnect".
	AfterSession string `yaml:"after_session"`
	// ProbeTimeout bounds the TCP dial that shows whether an upstream target
	// is reachable; 0 turns probing off (the state shows "upstream").
	ProbeTimeout Duration `yaml:"probe_timeout"`
}

func (m Menu) validate() []error {
	var errs []error
	switch m.AfterSession {
	case "menu", "disconnect":
	default:
		errs = append(errs, fmt.Errorf("menu.after_session: %q is not menu or disconnect", m.AfterSession))
	}
	if m.ProbeTimeout.D() < 0 || m.ProbeTimeout.D() > 5*time.Second {
		errs = append(errs, fmt.Errorf("menu.probe_timeout: %s is out of range (0 to 5s)", m.ProbeTimeout.D()))
	}
	return errs
}
