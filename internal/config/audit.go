package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Audit is the audit section: where events go and what a failing sink does
// to sessions.
type Audit struct {
	GateID    string       `yaml:"gate_id"`    // in every event; default: the host name
	QueueSize int          `yaml:"queue_size"` // events queued per sink before they are dropped
	File      AuditFile    `yaml:"file"`
	Stdout    bool         `yaml:"stdout"` // also write events to stdout
	Webhook   AuditWebhook `yaml:"webhook"`
	// Failure is what happens to sessions while a sink fails: fail-open
	// (serve, count the drops) or fail-closed (refuse new sessions, end
	// running ones). FailureByTarget overrides it per target name.
	Failure         string            `yaml:"failure"`
	FailureByTarget map[string]string `yaml:"failure_by_target"`
	// FileHash is the digest of transferred files in file events: sha256
	// (the default) or none (sizes, paths and results only).
	FileHash string `yaml:"file_hash"`
}

type AuditFile struct {
	Enabled  bool   `yaml:"enabled"`
	Path     string `yaml:"path"`      // relative paths are under the data directory
	MaxSize  Size   `yaml:"max_size"`  // rotate past this size; 0: never
	MaxFiles int    `yaml:"max_files"` // rotated files kept
	// MaxAge rotates the live file once it is this old and removes rotated
	// files last written longer ago: an event is gone between MaxAge and
	// twice MaxAge after it was written. 0: max_files alone decides.
	MaxAge Duration `yaml:"max_age"`
}

type AuditWebhook struct {
	URL       string   `yaml:"url"`        // empty: no webhook
	TokenFile string   `yaml:"token_file"` // sent as "Authorization: Bearer TOKEN"
	Retries   int      `yaml:"retries"`
	Backoff   Duration `yaml:"backoff"` // first retry delay, doubling
	Timeout   Duration `yaml:"timeout"` // per attempt
}

// File digests (audit.file_hash).
const (
	FileHashSHA256 = "sha256"
	FileHashNone   = "none"
)

// Failure policies of the audit sinks and the recordings.
const (
	FailOpen   = "fail-open"
	FailClosed = "fail-closed"
)

func auditDefaults() Audit {
	return Audit{
		QueueSize: 4096,
		File:      AuditFile{Enabled: true, Path: "audit/audit.jsonl", MaxSize: 100 << 20, MaxFiles: 10},
		Webhook:   AuditWebhook{Retries: 3, Backoff: Duration(500 * time.Millisecond), Timeout: Duration(5 * time.Second)},
		Failure:   FailOpen,
		FileHash:  FileHashSHA256,
	}
}

// FailClosed reports whether sessions to target must stop when the audit
// record cannot be kept.
func (a Audit) FailClosed(target string) bool {
	if m, ok := a.FailureByTarget[target]; ok {
		return m == FailClosed
	}
	return a.Failure == FailClosed
}

func (a Audit) validate(bad func(key, format string, args ...any)) {
	if a.QueueSize < 1 || a.QueueSize > 1<<20 {
		bad("audit.queue_size", "%d is out of range (1 to 1048576)", a.QueueSize)
	}
	if a.File.Enabled && a.File.Path == "" {
		bad("audit.file.path", "empty (set audit.file.enabled: false to turn the file off)")
	}
	if a.File.MaxSize < 0 {
		bad("audit.file.max_size", "must not be negative")
	}
	if a.File.MaxFiles < 0 || a.File.MaxFiles > 1000 {
		bad("audit.file.max_files", "%d is out of range (0 to 1000)", a.File.MaxFiles)
	}
	if d := a.File.MaxAge.D(); d < 0 || d > 0 && d < time.Hour {
		bad("audit.file.max_age", "%s is out of range (0, or at least 1h)", d)
	}
	if a.Webhook.URL != "" {
		u, err := url.Parse(a.Webhook.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("audit.webhook.url", "%q is not an http(s) URL", a.Webhook.URL)
		}
	}
	if a.Webhook.Retries < 0 || a.Webhook.Retries > 100 {
		bad("audit.webhook.retries", "%d is out of range (0 to 100)", a.Webhook.Retries)
	}
	if a.Webhook.Backoff.D() < 0 {
		bad("audit.webhook.backoff", "must not be negative")
	}
	if a.Webhook.Timeout.D() <= 0 {
		bad("audit.webhook.timeout", "must be positive")
	}
	mode := func(key, v string) {
		if v != FailOpen && v != FailClosed {
			bad(key, "%q is not fail-open or fail-closed", v)
		}
	}
	if a.FileHash != FileHashSHA256 && a.FileHash != FileHashNone {
		bad("audit.file_hash", "%q is not sha256 or none", a.FileHash)
	}
	mode("audit.failure", a.Failure)
	for t, v := range a.FailureByTarget {
		mode("audit.failure_by_target."+t, v)
	}
}

// Size is a byte count written as an integer or with a unit ("100MiB", "10MB", "512KiB").
type Size int64

func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	var v string
	if err := n.Decode(&v); err != nil {
		return fmt.Errorf("line %d: want a size such as \"100MiB\"", n.Line)
	}
	b, err := ParseSize(v)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = Size(b)
	return nil
}

func (s Size) MarshalYAML() (any, error) { return int64(s), nil }

// ParseSize reads "1048576", "512KiB", "100MiB", "1GiB", "10MB", "1GB", "64K", "64M", "1G".
func ParseSize(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (use e.g. \"100MiB\")", v)
	}
	return n * mult, nil
}
