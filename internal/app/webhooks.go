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

// addWebhooks wires auth.webhook into the authenticator and config_webhook
// into the broker, when their URLs are set. The returned func drops their
// idle connections.
func addWebhooks(cfg config.Config, a *auth.Authenticator, br *broker.Broker, log *slog.Logger) (func(), error) {
	var clients []*webhook.Client
	closeAll := func() {
		for _, c := range clients {
			c.Close()
		}
	}
	if w := cfg.Auth.Webhook; w.URL != "" {
		c, err := webhookClient(w.WebhookClient)
		if err != nil {
			return closeAll, &ConfigError{fmt.Errorf("auth.webhook: %w", err)}
		}
		clients = append(clients, c)
		a.SetWebhook(c, w.Mode)
		log.Info("auth webhook enabled", "url", w.URL, "mode", w.Mode, "timeout", w.Timeout.D(), "retries", w.Retries)
	}
	if w := cfg.ConfigWebhook; w.URL != "" {
		c, err := webhookClient(w.WebhookClient)
		if err != nil {
			closeAll()
			return func() {}, &ConfigError{fmt.Errorf("config_webhook: %w", err)}
		}
		clients = append(clients, c)
		al := w.Allow
		br.SetConfigHook(webhook.ConfigClient{Client: c}, webhook.Allow{
			Images: al.Images, MountSources: al.MountSources,
			MaxMemory: al.MaxMemory, MaxCPUs: al.MaxCPUs, MaxPids: al.MaxPids, Forwarding: al.Forwarding,
		})
		log.Info("config webhook enabled", "url", w.URL, "timeout", w.Timeout.D(), "retries", w.Retries)
	}
	return closeAll, nil
}
