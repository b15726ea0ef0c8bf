package xfer

import (
	"strings"

	"github.com/sshgate/sshgate/internal/audit"
)

// Rsync audits an rsync transfer from its server command line ("rsync
// --server [--sender] OPTIONS . PATH..."): direction and paths, one event per
// path when the session ends, with the result from the exit status. rsync's
// own protocol (file list, deltas, multiplexed and possibly compressed) is
// not followed, so there are no per-file events, sizes or digests.
type Rsync struct {
	emit   Emit
	sender bool
	delete bool
	paths  []string
}

// NewRsync recognises an rsync server command; nil for anything else.
func NewRsync(command string, emit Emit) *Rsync {
	w, ok := shellWords(command)
	if !ok || len(w) < 3 || (w[0] != "rsync" && !strings.HasSuffix(w[0], "/rsync")) {
		return nil
	}
	p := &Rsync{emit: emit}
	server := false
	dot := -1
	for i, a := range w[1:] {
		switch {
		case a == "--server":
			server = true
		case a == "--sender":
			p.sender = true
		case strings.HasPrefix(a, "--delete"):
			p.delete = true
		case a == "." && dot < 0:
			dot = i + 1
		}
	}
	if !server {
		return nil
	}
	if dot >= 0 {
		p.paths = w[dot+1:]
	}
	if len(p.paths) == 0 {
		p.paths = w[len(w)-1:]
	}
	return p
}

func (p *Rsync) ToTarget([]byte) {}
func (p *Rsync) ToUser([]byte)   {}

func (p *Rsync) End(ok bool) {
	op, dir := "write", "upload"
	if p.sender {
		op, dir = "read", "download"
	}
	for _, path := range p.paths {
		e := audit.Event{Type: audit.TypeFile, Protocol: "rsync", Op: op, Direction: dir, Path: path, Result: result(ok)}
		if p.delete && !p.sender {
			e.Message = "with --delete"
		}
		p.emit(e)
	}
}
