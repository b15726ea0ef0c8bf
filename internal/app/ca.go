package app

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/sshkeys"
)

// hostCertCheckEvery is how often a running gate checks whether its host
// certificates need renewing (ca.GateHostCertRenew before they expire).
const hostCertCheckEvery = 6 * time.Hour

// useCA wires the gate's certificate authority, when `sshgate ca init` made
// one or other user CAs are trusted: user certificates outward, login
// certificates and host-CA verification inward, and the gate's own host
// certificates (signed or renewed here, and re-checked every
// hostCertCheckEvery while the gate runs) presented beside its plain host
// keys. stop ends the renewal loop.
func loadCA(cfg config.Config, dir *datadir.Dir, hostKeys []ssh.Signer, log *slog.Logger) (*cas, error) {
	c, err := useCA(cfg, dir, hostKeys, log)
	if c == nil {
		c = &cas{stop: func() {}}
	}
	return c, err
}

// cas is what the gate's CAs give the rest: the trust for user certificates
// (nil refuses them), whether the gate has its own CA (inward login
// certificates and host-CA verification then follow), the gate's host
// certificates, and stop for the renewal loop.
type cas struct {
	trust     *ca.Trust
	own       bool
	ca        *ca.CA // the gate's own CAs (nil: none)
	hostCerts []ssh.Signer
	stop      func()
}

func useCA(cfg config.Config, dir *datadir.Dir, hostKeys []ssh.Signer, log *slog.Logger) (*cas, error) {
	out := &cas{stop: func() {}} // filled as the CAs are found
	own, err := LoadCA(dir)
	if err != nil && !errors.Is(err, ca.ErrNoCA) {
		return nil, err
	}
	for _, f := range cfg.CA.TrustedUserCAKeys {
		if _, err := os.Stat(f); err != nil {
			return nil, &ConfigError{fmt.Errorf("ca.trusted_user_ca_keys: %w", err)}
		}
	}
	trust := ca.NewTrust(dir.CADir(), own, cfg.CA.TrustedUserCAKeys)
	if _, err := trust.UserAuthorities(); err != nil {
		return nil, &ConfigError{fmt.Errorf("trusted user CAs: %w", err)}
	}
	if _, err := trust.Revocations(); err != nil {
		return nil, fmt.Errorf("certificate revocations: %w", err)
	}
	out.trust = trust
	if own == nil {
		return out, nil
	}
	out.own = true
	out.ca = own
	if own.Host == nil {
		return out, nil
	}
	principals := cfg.GateHostPrincipals()
	var certs []gateHostCert
	for _, k := range hostKeys {
		path := dir.HostKeyPath(ca.KeyKind(k.PublicKey())) + "-cert.pub"
		cert, renewed, err := own.GateHostCert(k.PublicKey(), path, principals)
		if err != nil {
			return nil, fmt.Errorf("gate host certificate: %w", err)
		}
		hs, err := sshkeys.HostSigner(k)
		if err != nil {
			return nil, err
		}
		cs, err := ca.NewHostCertSigner(cert, hs)
		if err != nil {
			return nil, fmt.Errorf("gate host certificate %s: %w", path, err)
		}
		out.hostCerts = append(out.hostCerts, cs)
		certs = append(certs, gateHostCert{path, hs, cs})
		if renewed {
			log.Info("gate host certificate signed", "path", path, "serial", cert.Serial, "principals", strings.Join(principals, ","))
		}
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(hostCertCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				renewGateHostCerts(own, certs, principals, log)
			}
		}
	}()
	out.stop = func() { close(done); <-exited }
	return out, nil
}

// gateHostCert is one of the gate's host keys and the signer presenting it
// with its certificate.
type gateHostCert struct {
	path   string
	key    ssh.Signer
	signer *ca.HostCertSigner
}

func renewGateHostCerts(own *ca.CA, certs []gateHostCert, principals []string, log *slog.Logger) {
	for _, c := range certs {
		cert, renewed, err := own.GateHostCert(c.key.PublicKey(), c.path, principals)
		if err == nil && renewed {
			err = c.signer.Set(cert, c.key)
		}
		if err != nil {
			log.Error("gate host certificate renewal failed", "path", c.path, "err", err)
		} else if renewed {
			log.Info("gate host certificate renewed", "path", c.path, "serial", cert.Serial)
		}
	}
}
