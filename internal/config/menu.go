package config

import (
	"fmt"
	"os"
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
	// MOTD is a text file shown at the top of the menu when a PTY session
	// opens it ("": none); read each time, so edits show without a restart.
	MOTD string `yaml:"motd"`
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
	if err := textFile(m.MOTD); err != nil {
		errs = append(errs, fmt.Errorf("menu.motd: %w", err))
	}
	return errs
}

// MaxTextFile bounds the banner and the message of the day.
const MaxTextFile = 8 << 10

// textFile checks an optional text file setting: readable, a regular file,
// at most MaxTextFile bytes.
func textFile(path string) error {
	if path == "" {
		return nil
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	case fi.Size() > MaxTextFile:
		return fmt.Errorf("%s is %d bytes, more than %d", path, fi.Size(), MaxTextFile)
	}
	return nil
}
