package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/account"
	"github.com/sshgate/sshgate/internal/auth"
	"github.com/sshgate/sshgate/internal/auth/oidc"
	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/store"
)

// ssoConfig builds single sign-on from auth.oidc (nil when it is off): the
// provider's client (discovery waits for the first sign-in, so the gate
// starts while the provider is down) and the mapping policy. It also
// prunes expired reuse windows from the store until ctx ends.
func ssoConfig(ctx context.Context, cfg config.Config, st store.Store, log *slog.Logger) (*auth.SSOConfig, error) {
	o := cfg.Auth.OIDC
	if !o.Enabled() {
		return nil, nil
	}
	var secret string
	if o.ClientSecretFile != "" {
		b, err := os.ReadFile(o.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.oidc.client_secret_file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
		if secret == "" || strings.ContainsAny(secret, "\r\n") {
			return nil, fmt.Errorf("auth.oidc.client_secret_file %s: want one line", o.ClientSecretFile)
		}
	}
	flow, err := oidc.New(oidc.Config{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: secret, Scopes: o.Scopes,
		Timeout: o.Timeout.D(), CAFile: o.CAFile})
	if err != nil {
		return nil, err
	}
	sc := &auth.SSOConfig{Flow: flow, Store: st, UserClaim: o.UserClaim, GroupsClaim: o.GroupsClaim,
		AllowedGroups: o.AllowedGroups, AllowedDomains: o.AllowedEmailDomains, ManageGrants: len(o.Grants) > 0,
		AutoProvision: o.AutoProvision, OfferAll: o.Offer == "all", Reuse: o.Reuse.D(),
		Prefix4: o.ReusePrefix4, Prefix6: o.ReusePrefix6, SecondFactor: o.SecondFactor, LoginTimeout: o.LoginTimeout.D()}
	for _, g := range o.Grants {
		sc.Grants = append(sc.Grants, auth.SSOGrant{Group: g.Group, Env: g.Env, Target: g.Target, Login: g.Login, Forwarding: g.Forwarding})
	}
	if sc.Reuse > 0 {
		go pruneSSO(ctx, st, log)
	}
	log.Info("single sign-on enabled", "issuer", o.Issuer, "client_id", o.ClientID, "reuse", sc.Reuse,
		"auto_provision", sc.AutoProvision, "offer", o.Offer)
	return sc, nil
}

// pruneSSO drops reuse windows that expired a day ago (a day of them stays
// for `sshgate sso list`).
func pruneSSO(ctx context.Context, st store.Store, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, err := st.PruneSSOSessions(pctx, time.Now().Add(-24*time.Hour)); err != nil && ctx.Err() == nil {
			log.Warn("prune sso reuse windows failed", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// clientSigner signs `cert` certificates from the gate's client CA.
func clientSigner(c *ca.CA) account.CertSigner {
	return func(key ssh.PublicKey, principal, keyID string, ttl time.Duration, ext, opts map[string]string) (*ssh.Certificate, error) {
		return c.SignClient(ca.UserCert{Key: key, Principals: []string{principal}, KeyID: keyID, TTL: ttl,
			Backdate: 30 * time.Second, Extensions: ext, CriticalOptions: opts})
	}
}
