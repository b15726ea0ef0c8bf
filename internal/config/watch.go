package config

import (
	"fmt"
	"strings"
	"unicode"
)

// Watch configures watching live PTY sessions (`ssh -t USER@GATE watch ID`,
// `sshgate sessions watch ID`).
type Watch struct {
	// Notice is the line the watched user reads (on their terminal, after
	// "sshgate: ") when a watch starts; {watcher} is the watcher's name.
	// "": no line.
	Notice string `yaml:"notice"`
	// NoticeEnd is the line when a watch ends; "": no line.
	NoticeEnd string `yaml:"notice_end"`
	// Backlog is how much of the session's recent output a watcher starts
	// with (0: none), so the watcher does not look at a blank screen.
	Backlog Size `yaml:"backlog"`
}

func defaultWatch() Watch {
	return Watch{Notice: "{watcher} is watching this session", NoticeEnd: "{watcher} stopped watching this session",
		Backlog: 16 << 10}
}

func (w Watch) validate() []error {
	var errs []error
	for _, f := range []struct{ key, v string }{{"watch.notice", w.Notice}, {"watch.notice_end", w.NoticeEnd}} {
		if len(f.v) > 200 || strings.ContainsFunc(f.v, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }) {
			errs = append(errs, fmt.Errorf("%s: must be one line of at most 200 bytes without control characters", f.key))
		}
	}
	if w.Backlog < 0 || w.Backlog > 1<<20 {
		errs = append(errs, fmt.Errorf("watch.backlog: %d is out of range (0 to 1MiB)", w.Backlog))
	}
	return errs
}
