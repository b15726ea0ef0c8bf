package cli

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

var (
	nameRE        = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	nameCharsRE   = regexp.MustCompile(`^[a-z0-9._-]*$`)
	loginRE       = regexp.MustCompile(`^[a-z_][a-z0-9._-]{0,31}$`)
	fingerprintRE = regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]{43}$`)
)

// reservedTargets are names the gate's own routing uses (alice+menu@gate).
var reservedTargets = map[string]bool{"gate": true, "menu": true}

// checkName validates a user, env or target name; what is "user", "env"...
func checkName(what, name string) error {
	if nameRE.MatchString(name) {
		return checkNotPlatform(what, name) // menu.go
	}
	switch {
	case name == "":
		return usagef("invalid %s name %q: empty", what, name)
	case len(name) > 63:
		return usagef("invalid %s name %q: at most 63 characters", what, name)
	case nameCharsRE.MatchString(name):
		return usagef("invalid %s name %q: must start with a lowercase letter or digit", what, name)
	}
	return usagef("invalid %s name %q: use lowercase letters, digits, '.', '_' and '-'", what, name)
}

// reservedUsers cannot be added: `sshgate grant list` and `grant revoke`
// would shadow `sshgate grant USER` for them.
var reservedUsers = map[string]bool{"list": true, "revoke": true}

func checkNewUserName(name string) error {
	if err := checkName("user", name); err != nil {
		return err
	}
	if reservedUsers[name] {
		return usagef("invalid user name %q: reserved (a grant subcommand)", name)
	}
	return nil
}

func checkTargetName(name string) error {
	if err := checkName("target", name); err != nil {
		return err
	}
	if reservedTargets[name] {
		return usagef("invalid target name %q: reserved by the gate", name)
	}
	return nil
}

// checkLogin validates a login on a target, as POSIX user names go.
func checkLogin(flag, login string) error {
	if loginRE.MatchString(login) {
		return nil
	}
	return usagef("invalid %s %q: use lowercase letters, digits, '.', '_' and '-', starting with a letter or '_', at most 32", flag, login)
}

func checkFingerprint(fp string) error {
	if fingerprintRE.MatchString(fp) {
		return nil
	}
	return usagef("invalid fingerprint %q: want SHA256:... as ssh-keygen -l prints it", fp)
}

// checkHostPort validates --upstream HOST:PORT.
func checkHostPort(flag, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, " \t/") {
		return usagef("%s %q: want HOST:PORT", flag, s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return usagef("%s %q: port %q is not a number from 1 to 65535", flag, s, port)
	}
	return nil
}

// parseSize parses a memory size as docker does: a number with an optional
// binary unit b, k, m, g (or kb, mb, gb, kib...), case-insensitive.
func parseSize(flag, s string) (int64, error) {
	bad := usagef("%s %q: want a size such as 512m or 2g", flag, s)
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return 0, bad
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], t[i:]
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, bad
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
		"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
	}[unit]
	if mult == 0 {
		return 0, bad
	}
	v := f * mult
	if v > 1<<50 {
		return 0, usagef("%s %q: too large", flag, s)
	}
	return int64(v), nil
}

// formatSize prints bytes back in the largest exact binary unit.
func formatSize(n int64) string {
	for _, u := range []struct {
		s string
		v int64
	}{{"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
		if n >= u.v && n%u.v == 0 {
			return fmt.Sprintf("%d%s", n/u.v, u.s)
		}
	}
	return strconv.FormatInt(n, 10)
}

func parseDuration(flag, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usagef("%s %q: want a positive duration such as 10m or 1h30m", flag, s)
	}
	return d, nil
}

// readPassword reads one line from r, without its line ending.
// DefaultMinPasswordLength is --min-password-length when not given.
const DefaultMinPasswordLength = 8

// readPassword reads the first line of r as a password of at least min
// characters.
func readPassword(r io.Reader, min int) ([]byte, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && err != io.EOF {
		return nil, failf("read password from stdin: %v", err)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return nil, usagef("empty password on stdin: refused")
	}
	if n := utf8.RuneCountInString(line); n < min {
		return nil, usagef("password on stdin has %d characters; at least %d are required (--min-password-length)", n, min)
	}
	return []byte(line), nil
}

func marshalAuthorizedKey(k ssh.PublicKey) []byte { return ssh.MarshalAuthorizedKey(k) }

// table prints aligned columns with a header.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cols ...string) {
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
