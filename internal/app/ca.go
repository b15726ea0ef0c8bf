package app

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth"
	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/target/upstream"
)

// useCA wires the gate's certificate authority, when `sshgate ca init` made
// one or other user CAs are trusted: user certificates outward, login
// certificates and host-CA verification inward, and the gate's own host
// certificates (signed or renewed here) presented beside its plain host keys.
func useCA(cfg config.Config, dir *datadir.Dir, hostKeys []ssh.Signer, sc *ssh.ServerConfig, a *auth.Authenticator, up *upstream.Backend, log *slog.Logger) error {
	own, err := ca.Load(dir.CADir())
	if err != nil && !errors.Is(err, ca.ErrNoCA) {
		return err
	}
	for _, f := range cfg.CA.TrustedUserCAKeys {
		if _, err := os.Stat(f); err != nil {
			return &ConfigError{fmt.Errorf("ca.trusted_user_ca_keys: %w", err)}
		}
	}
	trust := ca.NewTrust(dir.CADir(), own, cfg.CA.TrustedUserCAKeys)
	if _, err := trust.UserAuthorities(); err != nil {
		return &ConfigError{fmt.Errorf("trusted user CAs: %w", err)}
	}
	if _, err := trust.Revocations(); err != nil {
		return fmt.Errorf("certificate revocations: %w", err)
	}
	a.UseCerts(trust)
	if own == nil {
		return nil
	}
	up.UseCA(trust, cfg.CA.InwardTTL.D(), log)
	if own.Host == nil {
		return nil
	}
	principals := cfg.GateHostPrincipals()
	for _, k := range hostKeys {
		path := dir.HostKeyPath(ca.KeyKind(k.PublicKey())) + "-cert.pub"
		cert, renewed, err := own.GateHostCert(k.PublicKey(), path, principals)
		if err != nil {
			return fmt.Errorf("gate host certificate: %w", err)
		}
		hs, err := sshkeys.HostSigner(k)
		if err != nil {
			return err
		}
		cs, err := ssh.NewCertSigner(cert, hs)
		if err != nil {
			return fmt.Errorf("gate host certificate %s: %w", path, err)
		}
		sc.AddHostKey(cs)
		if renewed {
			log.Info("gate host certificate signed", "path", path, "serial", cert.Serial, "principals", strings.Join(principals, ","))
		}
	}
	return nil
}
