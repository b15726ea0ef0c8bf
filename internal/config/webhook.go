package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"time"
)

// WebhookClient is how the gate reaches a webhook. An empty URL turns the
// webhook off.
type WebhookClient struct {
	URL     string     `yaml:"url"`
	Timeout Duration   `yaml:"timeout"` // total budget of one call, retries included
	Retries int        `yaml:"retries"` // extra attempts after a 5xx or a connection error
	TLS     WebhookTLS `yaml:"tls"`
}

// WebhookTLS verifies the webhook server (ca_file) and presents a client
// certificate (cert_file and key_file), for https URLs.
type WebhookTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// AuthWebhook is auth.webhook: an HTTP service that decides logins, with
// ContainerSSH's protocol.
type AuthWebhook struct {
	WebhookClient `yaml:",inline"`
	// Mode: "fallback" (users in the local store authenticate locally only;
	// other names go to the webhook) or "only" (the webhook decides every
	// login; the local store's keys and passwords are not consulted).
	Mode string `yaml:"mode"`
}

// ConfigWebhook is config_webhook: an HTTP service asked, after
// authentication, where a connection goes and how its container looks.
type ConfigWebhook struct {
	WebhookClient `yaml:",inline"`
	Allow         WebhookAllow `yaml:"allow"`
	// ContainerSSHTarget is where a reply in ContainerSSH's format sends a
	// connection, since that format cannot name a target: every connection
	// lands in it, as in ContainerSSH. Empty: the username's own target.
	ContainerSSHTarget string `yaml:"containerssh_target"`
}

// WebhookAllow bounds what the config webhook may ask for. Nothing is
// allowed unless listed here.
type WebhookAllow struct {
	Images       []string `yaml:"images"`        // exact references, or prefixes ending in "*"
	MountSources []string `yaml:"mount_sources"` // host directories mount sources must lie within
	MaxMemory    int64    `yaml:"max_memory"`    // bytes
	MaxCPUs      float64  `yaml:"max_cpus"`
	MaxPids      int64    `yaml:"max_pids"`
	Forwarding   bool     `yaml:"forwarding"` // the reply may allow port forwarding
}

func defaultWebhookClient() WebhookClient {
	return WebhookClient{Timeout: Duration(5 * time.Second), Retries: 2}
}

func (c Config) validateWebhooks() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	client := func(key string, w WebhookClient) {
		if w.URL == "" {
			return
		}
		u, err := url.Parse(w.URL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad(key+".url", "%q is not an http(s):// URL", w.URL)
		case u.User != nil:
			bad(key+".url", "credentials in the URL are not allowed")
		case u.RawQuery != "" || u.Fragment != "":
			bad(key+".url", "a query or fragment is not allowed")
		}
		if d := w.Timeout.D(); d < 100*time.Millisecond || d > time.Minute {
			bad(key+".timeout", "%s is out of range (100ms to 1m)", d)
		}
		if w.Retries < 0 || w.Retries > 5 {
			bad(key+".retries", "%d is out of range (0 to 5)", w.Retries)
		}
		if (w.TLS.CertFile == "") != (w.TLS.KeyFile == "") {
			bad(key+".tls", "cert_file and key_file go together")
		}
		if (w.TLS.CAFile != "" || w.TLS.CertFile != "") && err == nil && u.Scheme != "https" {
			bad(key+".tls", "TLS files need an https:// url")
		}
	}
	client("auth.webhook", c.Auth.Webhook.WebhookClient)
	if c.Auth.Webhook.URL != "" {
		switch c.Auth.Webhook.Mode {
		case "fallback", "only":
		default:
			bad("auth.webhook.mode", "%q is not fallback or only", c.Auth.Webhook.Mode)
		}
	}
	client("config_webhook", c.ConfigWebhook.WebhookClient)
	a := c.ConfigWebhook.Allow
	for _, im := range a.Images {
		if im == "" || im == "*" {
			bad("config_webhook.allow.images", "%q would allow any image", im)
		}
	}
	for _, m := range a.MountSources {
		if !filepath.IsAbs(m) || filepath.Clean(m) != m || m == "/" {
			bad("config_webhook.allow.mount_sources", "%q is not an absolute, clean directory other than /", m)
		}
	}
	if a.MaxMemory < 0 || a.MaxCPUs < 0 || a.MaxPids < 0 {
		bad("config_webhook.allow", "max_memory, max_cpus and max_pids must not be negative")
	}
	return errs
}
