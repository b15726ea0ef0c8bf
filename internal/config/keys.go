package config

import (
	"path/filepath"
	"strings"
)

// Keys names private key files the gate reads from outside its data
// directory, e.g. mounted from a Kubernetes Secret, so that every replica
// presents the same host key and signs with the same CAs. Each is read at
// start, checked strictly (internal/secretfile), never generated and never
// written; unset, the key lives in the data directory as before.
type Keys struct {
	// HostKeyFiles are the gate's SSH host keys (OpenSSH private keys; at
	// most one per type). Set, DATA/host_keys/ssh_host_*_key are neither
	// read nor generated, and ssh.ecdsa_host_key has no effect.
	HostKeyFiles []string `yaml:"host_key_files"`
	// GateKeyFile is the gate's own key for logging in to targets
	// (DATA/gate_key).
	GateKeyFile string `yaml:"gate_key_file"`
	// The CA keys (DATA/ca/user_ca, client_ca, host_ca): any may be set
	// alone; `sshgate ca init` makes only the others.
	UserCAKeyFile   string `yaml:"user_ca_key_file"`
	ClientCAKeyFile string `yaml:"client_ca_key_file"`
	HostCAKeyFile   string `yaml:"host_ca_key_file"`
	// TOTPKeyFile seals TOTP secrets in the store: 32 bytes (DATA/totp_key).
	TOTPKeyFile string `yaml:"totp_key_file"`
}

// Files are the configured key files by their keys, in order.
func (k Keys) Files() [][2]string {
	var out [][2]string
	for _, f := range k.HostKeyFiles {
		out = append(out, [2]string{"keys.host_key_files", f})
	}
	for _, f := range [][2]string{
		{"keys.gate_key_file", k.GateKeyFile}, {"keys.user_ca_key_file", k.UserCAKeyFile},
		{"keys.client_ca_key_file", k.ClientCAKeyFile}, {"keys.host_ca_key_file", k.HostCAKeyFile},
		{"keys.totp_key_file", k.TOTPKeyFile},
	} {
		if f[1] != "" {
			out = append(out, f)
		}
	}
	return out
}

func (c Config) validateKeys(bad func(key, format string, args ...any)) {
	seen := map[string]string{}
	for _, f := range c.Keys.Files() {
		key, p := f[0], f[1]
		switch {
		case strings.TrimSpace(p) == "":
			bad(key, "empty file name")
			continue
		case !filepath.IsAbs(p):
			bad(key, "%q is not an absolute path", p)
			continue
		}
		p = filepath.Clean(p)
		if other, ok := seen[p]; ok {
			bad(key, "%s is also %s: every key needs a file of its own", p, other)
		}
		seen[p] = key
	}
}
