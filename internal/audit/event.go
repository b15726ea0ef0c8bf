// Package audit is the gate's typed record of who did what: connection,
// authentication, session, command, PTY, forwarding and file events, encoded
// as one JSON object per line and handed to sinks (a rotated JSONL file,
// stdout, an HTTP webhook). Emit never blocks the SSH path: each sink has a
// bounded queue, and what does not fit is dropped and counted. The package
// also tracks whether its sinks are healthy, so that fail-closed targets can
// refuse or end sessions when the record cannot be kept.
//
// Must not import: any project package
package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Event types.
const (
	TypeConnOpen     = "conn.open"
	TypeConnClose    = "conn.close"
	TypeAuthFailure  = "auth.failure"
	TypeTargetChosen = "target.chosen"
	TypeSessionStart = "session.start"
	TypeSessionEnd   = "session.end"
	TypeSessionDeny  = "session.denied"
	TypeExec         = "exec"
	TypePTY          = "pty"
	TypeForward      = "forward"
	TypeFile         = "file"
	// TypeAgentChannel is one auth-agent@openssh.com channel the target
	// opened: relayed to the user's agent (result ok, with bytes and
	// duration) or refused (result refused, with the reason).
	TypeAgentChannel = "agent.channel"
	TypeWatchStart   = "watch.start" // someone started watching a live PTY session
	TypeWatchEnd     = "watch.end"
)

// Event is one audit record. One flat schema for every type: a field is
// present only when it applies (see the README for which type carries what).
// Time, ID and GateID are filled by the Logger.
type Event struct {
	Time   time.Time `json:"time"`
	ID     string    `json:"id"`
	Type   string    `json:"type"`
	GateID string    `json:"gate_id,omitempty"`

	ConnID     string `json:"conn_id,omitempty"`
	SessionID  string `json:"session_id,omitempty"`
	ClientAddr string `json:"client_addr,omitempty"`
	User       string `json:"user,omitempty"`
	AuthMethod string `json:"auth_method,omitempty"`
	KeyFP      string `json:"key_fingerprint,omitempty"`
	// A single sign-on (auth_method oidc): the provider's subject, the
	// ID token's amr, and whether a reuse window stood in for the sign-in.
	SSOSubject string   `json:"sso_subject,omitempty"`
	AMR        []string `json:"amr,omitempty"`
	SSOReused  bool     `json:"sso_reused,omitempty"`
	Via        string   `json:"via,omitempty"` // ssh -J: the outer connection's id
	Reason     string   `json:"reason,omitempty"`

	Target string `json:"target,omitempty"`
	Login  string `json:"login,omitempty"`
	// WatchedUser is the user whose session a watch.* event's user watched.
	WatchedUser string `json:"watched_user,omitempty"`

	SessionType string  `json:"session_type,omitempty"` // shell, exec, subsystem
	Subsystem   string  `json:"subsystem,omitempty"`
	Command     string  `json:"command,omitempty"`
	Term        string  `json:"term,omitempty"`
	Cols        uint32  `json:"cols,omitempty"`
	Rows        uint32  `json:"rows,omitempty"`
	ExitStatus  *uint32 `json:"exit_status,omitempty"`
	ExitSignal  string  `json:"exit_signal,omitempty"`
	BytesIn     *int64  `json:"bytes_in,omitempty"`  // user -> target
	BytesOut    *int64  `json:"bytes_out,omitempty"` // target -> user
	DurationMS  *int64  `json:"duration_ms,omitempty"`

	Channel     string `json:"channel,omitempty"` // direct-tcpip, tcpip-forward, forwarded-tcpip, auth-agent@openssh.com
	Destination string `json:"destination,omitempty"`

	Op        string `json:"op,omitempty"`       // read, write, remove, rename, mkdir, rmdir, setstat, list, ...
	Protocol  string `json:"protocol,omitempty"` // sftp, scp, fish, rsync
	Path      string `json:"path,omitempty"`
	NewPath   string `json:"new_path,omitempty"`
	Direction string `json:"direction,omitempty"` // upload (user -> target), download (target -> user)
	Size      *int64 `json:"size,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	Result    string `json:"result,omitempty"` // ok, failed; denied: refused by the grant (with a reason)
	Message   string `json:"message,omitempty"`
	// Count is how many refused forward opens a result "suppressed" forward
	// event stands for (past the per-connection limit of single events).
	Count *int64 `json:"count,omitempty"`
}

// Int64 and Uint32 return pointers for the optional numeric fields.
func Int64(v int64) *int64    { return &v }
func Uint32(v uint32) *uint32 { return &v }

// Millis is d in whole milliseconds, for DurationMS.
func Millis(d time.Duration) *int64 { return Int64(d.Milliseconds()) }

// Encode returns e as one JSON line (ending in '\n'). Every string is made
// safe for an operator's terminal: invalid UTF-8 bytes become the text
// \xNN, and control characters (C0 including ESC, DEL, C1) and the Unicode
// line separators are written as \u escapes, so no raw control byte from an
// attacker-chosen field (a command, a file name, a user name as typed)
// reaches a terminal that shows the log.
func Encode(e *Event) ([]byte, error) {
	c := *e
	if c.AMR != nil {
		amr := make([]string, len(c.AMR))
		for i, a := range c.AMR {
			amr[i] = validUTF8(a)
		}
		c.AMR = amr
	}
	for _, p := range []*string{&c.Type, &c.GateID, &c.ConnID, &c.SessionID, &c.ClientAddr, &c.User, &c.AuthMethod, &c.SSOSubject,
		&c.KeyFP, &c.Reason, &c.Target, &c.Login, &c.WatchedUser, &c.SessionType, &c.Subsystem, &c.Command, &c.Term, &c.ExitSignal,
		&c.Channel, &c.Destination, &c.Op, &c.Protocol, &c.Path, &c.NewPath, &c.Direction, &c.SHA256, &c.Result, &c.Message} {
		*p = validUTF8(*p)
	}
	c.Time = c.Time.UTC()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("encode audit event: %w", err)
	}
	return escapeControls(buf.Bytes()), nil
}

// validUTF8 replaces each byte of s that is not part of valid UTF-8 with
// the four characters \xNN, keeping what was sent readable and unambiguous
// enough for an investigation.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b []byte
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = fmt.Appendf(b, `\x%02x`, s[i])
			i++
			continue
		}
		b = append(b, s[i:i+n]...)
		i += n
	}
	return string(b)
}

// escapeControls rewrites what encoding/json leaves raw but a terminal may
// act on: DEL (0x7f) and the C1 controls U+0080..U+009F. encoding/json
// already escapes C0 (including ESC) and U+2028/U+2029. The input is valid
// UTF-8 JSON, so these never occur inside a multi-byte sequence of another
// character.
func escapeControls(js []byte) []byte {
	need := false
	for i := 0; i < len(js); i++ {
		if js[i] == 0x7f || js[i] == 0xc2 && i+1 < len(js) && js[i+1] >= 0x80 && js[i+1] <= 0x9f {
			need = true
			break
		}
	}
	if !need {
		return js
	}
	out := make([]byte, 0, len(js)+16)
	for i := 0; i < len(js); i++ {
		switch {
		case js[i] == 0x7f:
			out = append(out, `\u007f`...)
		case js[i] == 0xc2 && i+1 < len(js) && js[i+1] >= 0x80 && js[i+1] <= 0x9f:
			out = fmt.Appendf(out, `\u%04x`, js[i+1])
			i++
		default:
			out = append(out, js[i])
		}
	}
	return out
}
