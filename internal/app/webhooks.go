package app

import (
	"fmt"
	"log/slog"

	"github.com/sshgate/sshgate/internal/auth"
	"github.com/sshgate/sshgate/internal/broker"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/webhook"
)

func webhookClient(c config.WebhookClient) (*webhook.Client, error) {
	return webhook.New(webhook.Config{
		URL: c.URL, Timeout: c.Timeout.D(), Retries: c.Retries,
		CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile,
	})
}

// webhooks are the auth and config webhooks' clients, when their URLs are set.
type webhooks struct {
	auth    auth.Poster // nil: none
	config  *broker.ConfigHook
	clients []*webhook.Client
}

// close drops the clients' idle connections.
func (w *webhooks) close() {
	for _, c := range w.clients {
		c.Close()
	}
}

func newWebhooks(cfg config.Config, log *slog.Logger) (*webhooks, error) {
	hs := &webhooks{}
	if w := cfg.Auth.Webhook; w.URL != "" {
		c, err := webhookClient(w.WebhookClient)
		if err != nil {
			return hs, &ConfigError{fmt.Errorf("auth.webhook: %w", err)}
		}
		hs.clients = append(hs.clients, c)
		hs.auth = c
		log.Info("auth webhook enabled", "url", w.URL, "mode", w.Mode, "timeout", w.Timeout.D(), "retries", w.Retries)
	}
	if w := cfg.ConfigWebhook; w.URL != "" {
		c, err := webhookClient(w.WebhookClient)
		if err != nil {
			hs.close()
			return &webhooks{}, &ConfigError{fmt.Errorf("config_webhook: %w", err)}
		}
		hs.clients = append(hs.clients, c)
		al := w.Allow
		hs.config = &broker.ConfigHook{Client: webhook.ConfigClient{Client: c}, Allow: webhook.Allow{
			Images: al.Images, MountSources: al.MountSources,
			MaxMemory: al.MaxMemory, MaxCPUs: al.MaxCPUs, MaxPids: al.MaxPids, Forwarding: al.Forwarding,
		}, ContainerSSHTarget: w.ContainerSSHTarget}
		log.Info("config webhook enabled", "url", w.URL, "timeout", w.Timeout.D(), "retries", w.Retries)
	}
	return hs, nil
}
