// Package config is the gate's YAML configuration: its schema, its defaults
// and Validate, which reports every problem with its path. It imports no
// other package of the project.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as a string ("30s", "10m").
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"30s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. \"30s\", \"10m\")", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the whole file. Zero values are replaced by Defaults.
type Config struct {
	Listen    string   `yaml:"listen"`    // host:port for SSH
	Advertise string   `yaml:"advertise"` // host[:port] users connect to, for `config` output; default: the address they reached
	Log       Log      `yaml:"log"`
	SSH       SSH      `yaml:"ssh"`
	Limits    Limits   `yaml:"limits"`
	Docker    Docker   `yaml:"docker"`
	EnvAllow  []string `yaml:"env_allow"` // env names (or NAME_* prefixes) passed to targets

	// issue 6 part A (defence.go): second factor, brute-force and flood defence.
	MFA       MFA       `yaml:"mfa"`
	Penalties Penalties `yaml:"penalties"`
	Auth      Auth      `yaml:"auth"`
	// Webhooks (issue 6, part B): types and validation in webhook.go.
	ConfigWebhook ConfigWebhook `yaml:"config_webhook"`
	Recordings    Recordings    `yaml:"recordings"` // PTY session recordings (obs.go)
	Metrics       Metrics       `yaml:"metrics"`    // metrics and health listener (obs.go)
	CA            CA            `yaml:"ca"`         // the gate's certificate authority (ca.go)
	Audit         Audit         `yaml:"audit"`      // audit events and their sinks (audit.go)
	Menu          Menu          `yaml:"menu"`       // the account menu (menu.go)
	Store         Store         `yaml:"store"`      // sqlite or postgres (store.go)
}

// Auth configures how users prove who they are.
type Auth struct {
	Webhook AuthWebhook `yaml:"webhook"` // webhook.go
}

type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

type SSH struct {
	ServerVersion string   `yaml:"server_version"`
	KeyExchanges  []string `yaml:"kex"`
	Ciphers       []string `yaml:"ciphers"`
	MACs          []string `yaml:"macs"`
}

type Limits struct {
	LoginGrace              Duration `yaml:"login_grace"`         // handshake + authentication deadline
	Handshake               Duration `yaml:"handshake"`           // version exchange + key exchange deadline (within login_grace)
	MaxAuthTries            int      `yaml:"max_auth_tries"`      // per connection
	MaxUnauthenticated      int      `yaml:"max_unauthenticated"` // connections still authenticating, all sources
	MaxUnauthenticatedPerIP int      `yaml:"max_unauthenticated_per_source"`
	MaxSessions             int      `yaml:"max_sessions"`     // channels per client connection
	UpstreamTimeout         Duration `yaml:"upstream_timeout"` // connect + handshake to a target
	ShutdownGrace           Duration `yaml:"shutdown_grace"`   // how long live sessions may run on after SIGTERM
}

type Docker struct {
	Host      string `yaml:"host"`       // default: $DOCKER_HOST or the local socket
	AgentPath string `yaml:"agent_path"` // default: sshgate-agent beside the sshgate binary
	Transport string `yaml:"transport"`  // "" (auto), "socket" or "exec"
}

// Defaults returns the configuration used when no file is given.
func Defaults() Config {
	return Config{
		Listen: "127.0.0.1:2222",
		Log:    Log{Level: "info", Format: "text"},
		SSH: SSH{
			ServerVersion: "SSH-2.0-sshgate",
			KeyExchanges:  []string{ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519},
			// AES-GCM only: OpenSSH clients order chacha20, aes-ctr, aes-gcm and
			// the client's order decides, so offering chacha20 or ctr would give
			// stock clients a slower cipher (x/crypto's chacha20 is generic Go;
			// ctr needs a separate HMAC-SHA2 pass). Operators may add them.
			Ciphers: []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM},
			MACs:    []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM},
		},
		Limits: Limits{
			LoginGrace:              Duration(30 * time.Second),
			Handshake:               Duration(10 * time.Second),
			MaxAuthTries:            6,
			MaxUnauthenticated:      256,
			MaxUnauthenticatedPerIP: 16,
			MaxSessions:             10,
			UpstreamTimeout:         Duration(10 * time.Second),
			ShutdownGrace:           Duration(30 * time.Second),
		},
		EnvAllow:      []string{"LANG", "LC_*"},
		MFA:           defaultMFA(),
		Penalties:     defaultPenalties(),
		Auth:          Auth{Webhook: AuthWebhook{Mode: "fallback", WebhookClient: defaultWebhookClient()}},
		ConfigWebhook: ConfigWebhook{WebhookClient: defaultWebhookClient()},
		Recordings:    defaultRecordings(),
		CA:            CA{InwardTTL: Duration(DefaultInwardTTL)},
		Audit:         auditDefaults(),
		Menu:          Menu{AfterSession: "menu", ProbeTimeout: Duration(300 * time.Millisecond)},
	}
}

// Load reads a YAML file over the defaults. Unknown keys are errors. An empty
// path returns the defaults.
func Load(file string) (Config, error) {
	c := Defaults()
	if file == "" {
		return c, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, errEOF) {
		return c, fmt.Errorf("config %s: %w", file, err)
	}
	return c, nil
}

var errEOF = errorsEOF()

func errorsEOF() error {
	var c Config
	return yaml.NewDecoder(bytes.NewReader(nil)).Decode(&c)
}

// Validate returns every problem found, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not HOST:PORT", c.Listen)
	}
	if _, _, ok := c.AdvertiseHostPort(); c.Advertise != "" && (!ok || strings.ContainsAny(c.Advertise, " \t\n/@")) {
		bad("advertise", "%q is not HOST or HOST:PORT", c.Advertise)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	if !strings.HasPrefix(c.SSH.ServerVersion, "SSH-2.0-") || len(c.SSH.ServerVersion) > 200 {
		bad("ssh.server_version", "%q must start with SSH-2.0- (and be short)", c.SSH.ServerVersion)
	}
	sup := ssh.SupportedAlgorithms()
	checkAlgos := func(key string, got, supported []string) {
		if len(got) == 0 {
			bad(key, "empty")
		}
		for _, a := range got {
			if !contains(supported, a) {
				bad(key, "%q is not supported (supported: %s)", a, strings.Join(supported, ", "))
			}
		}
	}
	checkAlgos("ssh.kex", c.SSH.KeyExchanges, sup.KeyExchanges)
	checkAlgos("ssh.ciphers", c.SSH.Ciphers, sup.Ciphers)
	checkAlgos("ssh.macs", c.SSH.MACs, sup.MACs)
	l := c.Limits
	if l.LoginGrace.D() <= 0 || l.LoginGrace.D() > 10*time.Minute {
		bad("limits.login_grace", "%s is out of range (1s to 10m)", l.LoginGrace.D())
	}
	if l.MaxAuthTries < 1 || l.MaxAuthTries > 100 {
		bad("limits.max_auth_tries", "%d is out of range (1 to 100)", l.MaxAuthTries)
	}
	if l.MaxUnauthenticated < 1 {
		bad("limits.max_unauthenticated", "%d must be at least 1", l.MaxUnauthenticated)
	}
	if l.MaxUnauthenticatedPerIP < 1 || l.MaxUnauthenticatedPerIP > l.MaxUnauthenticated {
		bad("limits.max_unauthenticated_per_source", "%d must be between 1 and limits.max_unauthenticated", l.MaxUnauthenticatedPerIP)
	}
	if l.MaxSessions < 1 {
		bad("limits.max_sessions", "%d must be at least 1", l.MaxSessions)
	}
	if l.UpstreamTimeout.D() <= 0 {
		bad("limits.upstream_timeout", "%s must be positive", l.UpstreamTimeout.D())
	}
	if l.ShutdownGrace.D() < 0 {
		bad("limits.shutdown_grace", "%s must not be negative", l.ShutdownGrace.D())
	}
	errs = append(errs, c.Menu.validate()...)
	switch c.Docker.Transport {
	case "", "socket", "exec":
	default:
		bad("docker.transport", "%q is not socket or exec", c.Docker.Transport)
	}
	for _, e := range c.EnvAllow {
		if _, err := path.Match(e, "X"); err != nil || e == "" || strings.ContainsAny(e, "= ") {
			bad("env_allow", "%q is not an environment variable name or NAME_* pattern", e)
		}
	}
	c.validateDefence(bad)
	errs = append(errs, c.validateWebhooks()...)
	errs = append(errs, c.validateObs()...)
	c.validateCA(bad)
	c.Audit.validate(bad)
	c.Store.validate(bad)
	return errors.Join(errs...)
}

// AdvertiseHostPort splits advertise ("host" or "host:port", port 22 when
// none is given). ok is false when advertise is empty or malformed.
func (c Config) AdvertiseHostPort() (host, port string, ok bool) {
	a := c.Advertise
	if a == "" {
		return "", "", false
	}
	if !strings.Contains(a, ":") {
		return a, "22", true
	}
	h, p, err := net.SplitHostPort(a)
	if err != nil || h == "" || p == "" {
		return "", "", false
	}
	return h, p, true
}

// EnvAllowed reports whether an env request for name may pass to a target.
func (c Config) EnvAllowed(name string) bool {
	for _, p := range c.EnvAllow {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
