package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/sshgate/sshgate/internal/route"
)

// Entry is one metadata or environment value. A sensitive value is never
// logged and never sent on to another webhook.
type Entry struct {
	Value     string `json:"value"`
	Sensitive bool   `json:"sensitive"`
}

// AuthRequest is the body POSTed to URL/password and URL/pubkey, with the
// field names of ContainerSSH's authentication webhook.
type AuthRequest struct {
	Username       string `json:"username"`
	RemoteAddress  string `json:"remoteAddress"`
	ConnectionID   string `json:"connectionId"`
	ClientVersion  string `json:"clientVersion"`
	PasswordBase64 string `json:"passwordBase64,omitempty"` // /password only
	PublicKey      string `json:"publicKey,omitempty"`      // /pubkey only: an authorized_keys line
}

// AuthReply is the webhook's answer. Unknown fields are ignored (as
// ContainerSSH does), but every known field must have its type.
type AuthReply struct {
	Success               bool             `json:"success"`
	AuthenticatedUsername string           `json:"authenticatedUsername"`
	Metadata              map[string]Entry `json:"metadata"`
	Environment           map[string]Entry `json:"environment"`
}

// ConfigRequest is the body POSTed to the config webhook after
// authentication. Metadata holds only the non-sensitive entries.
type ConfigRequest struct {
	Username              string           `json:"username"` // the SSH username as typed (USER[+TARGET[+LOGIN]])
	RemoteAddress         string           `json:"remoteAddress"`
	ConnectionID          string           `json:"connectionId"`
	ClientVersion         string           `json:"clientVersion"`
	AuthenticatedUsername string           `json:"authenticatedUsername"` // the gate user
	Method                string           `json:"method"`                // "password" or "publickey"
	Target                string           `json:"target"`                // the target the username asked for, or ""
	Login                 string           `json:"login"`                 // the login the username asked for, or ""
	Metadata              map[string]Entry `json:"metadata"`
}

// ConfigReply is the config webhook's answer. Every field is optional; an
// empty object changes nothing. Unknown fields are refused: a reply asking
// for something this gate does not understand (privileged, capabilities,
// a network) is refused, not half-applied.
type ConfigReply struct {
	Target     string          `json:"target"`     // a target name in the store: the connection goes there
	Login      string          `json:"login"`      // the login on it (default: the target's)
	Forwarding bool            `json:"forwarding"` // port forwarding, if config_webhook.allow.forwarding
	Docker     *DockerOverride `json:"docker"`     // for a docker target, within config_webhook.allow
	// ContainerSSH is set when the reply came in ContainerSSH's format
	// ({"config": ...}), which never names a target.
	ContainerSSH bool `json:"-"`
}

// DockerOverride changes a docker target's container for one connection.
type DockerOverride struct {
	Image  string            `json:"image"`
	Env    map[string]string `json:"env"`
	Mounts []string          `json:"mounts"` // SRC:DST[:ro|:rw]
	Memory int64             `json:"memory"` // bytes
	CPUs   float64           `json:"cpus"`
	Pids   int64             `json:"pids"`
}

// Limits on what a reply may carry.
const (
	maxEntries  = 64
	maxValueLen = 4096
	maxMounts   = 16
)

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
	metaKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,128}$`)
	imageRE   = regexp.MustCompile(`^[a-z0-9][a-zA-Z0-9._/:@-]{0,254}$`)
)

// ValidEnvName reports whether s may name an environment variable.
func ValidEnvName(s string) bool { return envNameRE.MatchString(s) }

// exactKeys walks the keys of the JSON object in data and refuses one that
// appears twice (encoding/json would keep the last) or that matches a known
// key only when case is ignored (encoding/json would take "Success" for
// "success"): a reply means what it says literally or nothing.
func exactKeys(data []byte, known ...string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		if seen[key] {
			return fmt.Errorf("key %q appears twice", route.Printable(key))
		}
		seen[key] = true
		for _, k := range known {
			if key != k && strings.EqualFold(key, k) {
				return fmt.Errorf("key %q is not %q", route.Printable(key), k)
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}

// decodeOne decodes exactly one JSON value from data into v.
func decodeOne(data []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func checkValue(what, v string) error {
	if len(v) > maxValueLen || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return fmt.Errorf("%s: value too long, not UTF-8 or holding NUL", what)
	}
	return nil
}

// ParseAuthReply parses and checks an auth webhook reply. The reply must be
// one JSON object; success must be the JSON literal true for a login to
// pass (the caller checks it); entries are bounded in number and size, and
// environment names must be valid variable names.
func ParseAuthReply(data []byte) (AuthReply, error) {
	var r AuthReply
	if !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
		return AuthReply{}, errors.New("auth reply: not a JSON object")
	}
	if err := exactKeys(data, "success", "authenticatedUsername", "metadata", "environment"); err != nil {
		return AuthReply{}, fmt.Errorf("auth reply: %w", err)
	}
	if err := decodeOne(data, &r, false); err != nil {
		return AuthReply{}, fmt.Errorf("auth reply: %w", err)
	}
	if len(r.AuthenticatedUsername) > 64 {
		return AuthReply{}, errors.New("auth reply: authenticatedUsername too long")
	}
	if len(r.Metadata) > maxEntries || len(r.Environment) > maxEntries {
		return AuthReply{}, errors.New("auth reply: too many metadata or environment entries")
	}
	for k, e := range r.Metadata {
		if !metaKeyRE.MatchString(k) {
			return AuthReply{}, fmt.Errorf("auth reply: metadata key %q is invalid", route.Printable(k))
		}
		if err := checkValue("auth reply: metadata "+k, e.Value); err != nil {
			return AuthReply{}, err
		}
	}
	for k, e := range r.Environment {
		if !ValidEnvName(k) {
			return AuthReply{}, fmt.Errorf("auth reply: environment name %q is invalid", route.Printable(k))
		}
		if err := checkValue("auth reply: environment "+k, e.Value); err != nil {
			return AuthReply{}, err
		}
	}
	return r, nil
}

// ParseConfigReply parses and checks the shape of a config webhook reply.
// Whether its asks are within the operator's bounds is Allow's business.
func ParseConfigReply(data []byte) (ConfigReply, error) {
	var r ConfigReply
	if !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
		return ConfigReply{}, errors.New("config reply: not a JSON object")
	}
	if isContainerSSHReply(data) {
		r, err := parseContainerSSHReply(data)
		if err != nil {
			return ConfigReply{}, err
		}
		if err := checkOverride(r.Docker); err != nil {
			return ConfigReply{}, err
		}
		return r, nil
	}
	if err := exactKeys(data, "target", "login", "forwarding", "docker"); err != nil {
		return ConfigReply{}, fmt.Errorf("config reply: %w", err)
	}
	if err := decodeOne(data, &r, true); err != nil {
		return ConfigReply{}, fmt.Errorf("config reply: %w", err)
	}
	if len(r.Target) > 64 || len(r.Login) > 32 {
		return ConfigReply{}, errors.New("config reply: target or login too long")
	}
	if err := checkOverride(r.Docker); err != nil {
		return ConfigReply{}, err
	}
	return r, nil
}

// checkOverride checks the shape of a container override, whichever reply
// format carried it.
func checkOverride(d *DockerOverride) error {
	if d != nil {
		if d.Image != "" && !imageRE.MatchString(d.Image) {
			return fmt.Errorf("config reply: image %q is invalid", route.Printable(d.Image))
		}
		if len(d.Env) > maxEntries || len(d.Mounts) > maxMounts {
			return errors.New("config reply: too many env entries or mounts")
		}
		for k, v := range d.Env {
			if !ValidEnvName(k) {
				return fmt.Errorf("config reply: env name %q is invalid", route.Printable(k))
			}
			if err := checkValue("config reply: env "+k, v); err != nil {
				return err
			}
		}
		for _, m := range d.Mounts {
			if len(m) > 1024 || !utf8.ValidString(m) || strings.ContainsAny(m, "\x00\n,") {
				return fmt.Errorf("config reply: mount %q is invalid", route.Printable(m))
			}
		}
		if d.Memory < 0 || d.CPUs < 0 || d.Pids < 0 || d.CPUs != d.CPUs {
			return errors.New("config reply: negative limit")
		}
	}
	return nil
}
