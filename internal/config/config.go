// Package config is the gate's YAML configuration: its schema, its defaults
// and Validate, which reports every problem with its path.
//
// Must not import: any project package
package config

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
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
	Listen    string `yaml:"listen"`    // host:port for SSH
	Advertise string `yaml:"advertise"` // host[:port] users connect to, for `config` output; default: the address they reached
	Log       Log    `yaml:"log"`
	SSH       SSH    `yaml:"ssh"`
	Limits    Limits `yaml:"limits"`
	Docker    Docker `yaml:"docker"`
	// Kubernetes targets (kubernetes.go).
	Kubernetes Kubernetes `yaml:"kubernetes"`
	EnvAllow   []string   `yaml:"env_allow"` // env names (or NAME_* prefixes) passed to targets

	// Second factor, brute-force and flood defence (defence.go).
	MFA       MFA       `yaml:"mfa"`
	Penalties Penalties `yaml:"penalties"`
	Auth      Auth      `yaml:"auth"`
	// Webhooks: types and validation in webhook.go.
	ConfigWebhook ConfigWebhook `yaml:"config_webhook"`
	Recordings    Recordings    `yaml:"recordings"` // PTY session recordings (obs.go)
	Metrics       Metrics       `yaml:"metrics"`    // metrics and health listener (obs.go)
	CA            CA            `yaml:"ca"`         // the gate's certificate authority (ca.go)
	Audit         Audit         `yaml:"audit"`      // audit events and their sinks (audit.go)
	Menu          Menu          `yaml:"menu"`       // the account menu (menu.go)
	Sessions      Sessions      `yaml:"sessions"`   // default session limits of grants (sessions.go)
	Store         Store         `yaml:"store"`      // sqlite or postgres (store.go)
	Watch         Watch         `yaml:"watch"`      // watching live PTY sessions (watch.go)
	Keys          Keys          `yaml:"keys"`       // key files from outside the data directory (keys.go)
}

// Auth configures how users prove who they are.
type Auth struct {
	Webhook AuthWebhook `yaml:"webhook"` // webhook.go
	OIDC    OIDC        `yaml:"oidc"`    // single sign-on (oidc.go)
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
	// Offered after Ciphers and MACs to clients that are not OpenSSH 6.2 or
	// later (offer.go): paramiko, dropbear, PuTTY, ...
	CompatCiphers []string `yaml:"compat_ciphers"`
	CompatMACs    []string `yaml:"compat_macs"`
	// ECDSAHostKey also offers (and makes) an ecdsa-sha2-nistp256 host key.
	ECDSAHostKey bool `yaml:"ecdsa_host_key"`
	// PROXY protocol from trusted load balancers (proxy.go).
	ProxyProtocol ProxyProtocol `yaml:"proxy_protocol"`
	// Jump: ssh -J USER@GATE LOGIN@TARGET, the gate ending the inner
	// connection as the target (default true).
	Jump bool `yaml:"jump"`
	// Banner is a text file sent before authentication, as OpenSSH's
	// Banner ("": none).
	Banner string `yaml:"banner"`
}

type Limits struct {
	LoginGrace              Duration `yaml:"login_grace"`         // handshake + authentication deadline
	Handshake               Duration `yaml:"handshake"`           // version exchange + key exchange deadline (within login_grace)
	MaxAuthTries            int      `yaml:"max_auth_tries"`      // per connection
	MaxUnauthenticated      int      `yaml:"max_unauthenticated"` // connections still authenticating, all sources
	MaxUnauthenticatedPerIP int      `yaml:"max_unauthenticated_per_source"`
	MaxSessions             int      `yaml:"max_sessions"`     // session channels open at once per client connection
	MaxChannels             int      `yaml:"max_channels"`     // channels of every kind open at once per client connection
	UpstreamTimeout         Duration `yaml:"upstream_timeout"` // connect + handshake to a target
	ShutdownGrace           Duration `yaml:"shutdown_grace"`   // how long live sessions may run on after SIGTERM
}

type Docker struct {
	Host      string `yaml:"host"`       // default: $DOCKER_HOST or the local socket
	AgentPath string `yaml:"agent_path"` // default: sshgate-agent beside the sshgate binary
	Transport string `yaml:"transport"`  // "" (auto), "socket" or "exec"

	AllowRoot      bool     `yaml:"allow_root"`      // containers may run as uid 0
	ReadonlyRootfs bool     `yaml:"readonly_rootfs"` // read-only root filesystem (tmpfs /tmp); socket transport only
	DenyMounts     []string `yaml:"deny_mounts"`     // host paths refused as mount sources, beside the built-in list
	DefaultMemory  Size     `yaml:"default_memory"`  // for targets without --memory; 0: no limit
	DefaultPids    int64    `yaml:"default_pids"`    // for targets without --pids
	IdleTTL        Duration `yaml:"idle_ttl"`        // per-user containers without --idle-ttl
	PoolIdleTTL    Duration `yaml:"pool_idle_ttl"`   // a pool not used this long is drained
	AgentTimeout   Duration `yaml:"agent_timeout"`   // wait for the agent in a new container
	RemoveTimeout  Duration `yaml:"remove_timeout"`  // one container removal
	OpenTimeout    Duration `yaml:"open_timeout"`    // a whole container start, engine calls included
}

// Docker defaults (the docker backend's own).
const (
	DefaultDockerMemory = 1 << 30
	DefaultDockerPids   = 256
)

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
			// What clients without AES-GCM need (paramiko 2.12: aes-ctr;
			// dropbear 2022.83: aes-ctr or chacha20, HMAC-SHA2 without ETM).
			CompatCiphers: []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128CTR, ssh.CipherAES256CTR},
			CompatMACs:    []string{ssh.HMACSHA256, ssh.HMACSHA512},
			Jump:          true,
		},
		Limits: Limits{
			LoginGrace:              Duration(30 * time.Second),
			Handshake:               Duration(10 * time.Second),
			MaxAuthTries:            6,
			MaxUnauthenticated:      256,
			MaxUnauthenticatedPerIP: 16,
			MaxSessions:             10,
			MaxChannels:             1000,
			UpstreamTimeout:         Duration(10 * time.Second),
			ShutdownGrace:           Duration(30 * time.Second),
		},
		Docker: Docker{
			DefaultMemory: DefaultDockerMemory,
			DefaultPids:   DefaultDockerPids,
			IdleTTL:       Duration(15 * time.Minute),
			PoolIdleTTL:   Duration(30 * time.Minute),
			AgentTimeout:  Duration(15 * time.Second),
			RemoveTimeout: Duration(15 * time.Second),
			OpenTimeout:   Duration(60 * time.Second),
		},
		Kubernetes:    defaultKubernetes(),
		EnvAllow:      []string{"LANG", "LC_*"},
		MFA:           defaultMFA(),
		Penalties:     defaultPenalties(),
		Auth:          Auth{Webhook: AuthWebhook{Mode: "fallback", WebhookClient: defaultWebhookClient()}, OIDC: defaultOIDC()},
		ConfigWebhook: ConfigWebhook{WebhookClient: defaultWebhookClient()},
		Recordings:    defaultRecordings(),
		CA:            CA{InwardTTL: Duration(DefaultInwardTTL)},
		Audit:         auditDefaults(),
		Menu:          Menu{AfterSession: "menu", ProbeTimeout: Duration(300 * time.Millisecond)},
		Watch:         defaultWatch(),
		Store:         Store{Heartbeat: Duration(DefaultHeartbeat), HeartbeatExpiry: Duration(DefaultHeartbeatExpiry)},
	}
}

// Load reads a YAML file over the defaults. Every problem of the file
// itself (syntax, unknown or repeated keys, values of the wrong type) is
// returned at once as Problems. An empty path returns the defaults. Check
// adds validation.
func Load(file string) (Config, error) {
	c, _, probs := load(file)
	if len(probs) > 0 {
		probs.sort()
		return c, probs
	}
	return c, nil
}

// Validate returns every problem found, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if msg := checkListen(c.Listen); msg != "" {
		bad("listen", "%s", msg)
	}
	if err := textFile(c.SSH.Banner); err != nil {
		bad("ssh.banner", "%v", err)
	}
	if _, p, ok := c.AdvertiseHostPort(); c.Advertise != "" && (!ok || strings.ContainsAny(c.Advertise, " \t\n/@")) {
		bad("advertise", "%q is not HOST or HOST:PORT", c.Advertise)
	} else if n, err := strconv.Atoi(p); ok && (err != nil || n < 1 || n > 65535) {
		bad("advertise", "port %q is not a number from 1 to 65535", p)
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
	for key, l := range map[string][2][]string{"ssh.compat_ciphers": {c.SSH.CompatCiphers, sup.Ciphers}, "ssh.compat_macs": {c.SSH.CompatMACs, sup.MACs}} {
		if len(l[0]) > 0 { // empty: every client gets ciphers and macs
			checkAlgos(key, l[0], l[1])
		}
	}
	c.SSH.ProxyProtocol.validate(c.Limits.LoginGrace.D(), bad)
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
	if l.MaxChannels < l.MaxSessions || l.MaxChannels > 100000 {
		bad("limits.max_channels", "%d must be between limits.max_sessions and 100000", l.MaxChannels)
	}
	if l.UpstreamTimeout.D() <= 0 {
		bad("limits.upstream_timeout", "%s must be positive", l.UpstreamTimeout.D())
	}
	if l.ShutdownGrace.D() < 0 {
		bad("limits.shutdown_grace", "%s must not be negative", l.ShutdownGrace.D())
	}
	errs = append(errs, c.Menu.validate()...)
	errs = append(errs, c.Watch.validate()...)
	errs = append(errs, c.Sessions.validate()...)
	c.Docker.validate(bad)
	c.Kubernetes.validate(bad)
	for _, e := range c.EnvAllow {
		if _, err := path.Match(e, "X"); err != nil || e == "" || strings.ContainsAny(e, "= ") {
			bad("env_allow", "%q is not an environment variable name or NAME_* pattern", e)
		}
	}
	c.validateDefence(bad)
	errs = append(errs, c.validateWebhooks()...)
	errs = append(errs, c.validateObs()...)
	c.validateCA(bad)
	c.validateKeys(bad)
	c.validateOIDC(bad)
	c.Audit.validate(bad)
	c.Store.validate(bad)
	return errors.Join(errs...)
}

// checkListen says what is wrong with a listen address ("" when nothing):
// HOST:PORT with a port from 0 (any free port) to 65535.
func checkListen(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not HOST:PORT", addr)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("port %q is not a number from 0 to 65535", p)
	}
	return ""
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
