package app

import (
	"errors"

	"github.com/sshgate/sshgate/internal/auth/totp"
	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/datadir"
)

// KeyFiles are the configuration's keys section as the data directory
// takes it.
func KeyFiles(cfg config.Config) datadir.KeyFiles {
	k := cfg.Keys
	return datadir.KeyFiles{Host: k.HostKeyFiles, Gate: k.GateKeyFile, UserCA: k.UserCAKeyFile,
		ClientCA: k.ClientCAKeyFile, HostCA: k.HostCAKeyFile, TOTP: k.TOTPKeyFile}
}

// UseKeys points dir at the configured key files; a file inside the data
// directory is a ConfigError.
func UseKeys(cfg config.Config, dir *datadir.Dir) error {
	return keyErr(dir.UseKeys(KeyFiles(cfg)))
}

// CAKeyFiles are the configured CA key files of dir.
func CAKeyFiles(dir *datadir.Dir) ca.KeyFiles {
	return ca.KeyFiles{User: dir.Keys.UserCA, Client: dir.Keys.ClientCA, Host: dir.Keys.HostCA}
}

// LoadCA reads the gate's CA keys: the configured files, else DATA/ca.
func LoadCA(dir *datadir.Dir) (*ca.CA, error) {
	c, err := ca.LoadWith(dir.CADir(), CAKeyFiles(dir))
	return c, keyErr(err)
}

// TOTPKey is the key sealing TOTP secrets: the configured file, else
// DATA/totp_key (created on first use).
func TOTPKey(dir *datadir.Dir) ([]byte, error) {
	if key, ok, err := dir.TOTPKey(); ok {
		return key, keyErr(err)
	}
	return totp.LoadKey(dir.Path)
}

// keyErr makes a configured key file that is missing, refused or not a key
// a ConfigError: serve reports it and exits 2, as for the rest of the
// configuration.
func keyErr(err error) error {
	var de *datadir.KeyFileError
	var ce *ca.KeyFileError
	if errors.As(err, &de) || errors.As(err, &ce) {
		return &ConfigError{err}
	}
	return err
}
