package datadir

import (
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/sshkeys"
)

// secretVolume writes private keys of kinds as the kubelet mounts a Secret
// (NAME -> ..data/NAME -> ..TIMESTAMP/NAME, mode), returning the mount
// directory and the public keys by name.
func secretVolume(t *testing.T, mode os.FileMode, kinds map[string]string) (string, map[string]ssh.PublicKey) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sshgate-keys")
	ts := filepath.Join(dir, "..2026_12_04_13_00_00.1")
	if err := os.MkdirAll(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	pubs := map[string]ssh.PublicKey{}
	for name, kind := range kinds {
		k, err := sshkeys.Generate(kind)
		if err != nil {
			t.Fatal(err)
		}
		block, err := ssh.MarshalPrivateKey(k, "")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(ts, name)
		os.WriteFile(p, pem.EncodeToMemory(block), 0o600)
		os.Chmod(p, mode)
		os.Symlink("..data/"+name, filepath.Join(dir, name))
		s, _ := ssh.NewSignerFromSigner(k)
		pubs[name] = s.PublicKey()
	}
	os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data"))
	os.Chmod(ts, 0o555)
	os.Chmod(dir, 0o555)
	t.Cleanup(func() { os.Chmod(dir, 0o755); os.Chmod(ts, 0o755) })
	return dir, pubs
}

func TestExternalHostKeys(t *testing.T) {
	d, _, err := Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	mount, pubs := secretVolume(t, 0o440, map[string]string{
		"ssh_host_rsa_key": sshkeys.RSA, "ssh_host_ed25519_key": sshkeys.Ed25519, "gate_key": sshkeys.Ed25519})
	err = d.UseKeys(KeyFiles{Host: []string{filepath.Join(mount, "ssh_host_rsa_key"), filepath.Join(mount, "ssh_host_ed25519_key")},
		Gate: filepath.Join(mount, "gate_key")})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := d.HostKeys(true) // ecdsa asked for: the files decide
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !same(keys[0].PublicKey(), pubs["ssh_host_ed25519_key"]) || !same(keys[1].PublicKey(), pubs["ssh_host_rsa_key"]) {
		t.Fatalf("host keys %v, want the Secret's ed25519 then rsa", types(keys))
	}
	gk, err := d.GateKey()
	if err != nil || !same(gk.PublicKey(), pubs["gate_key"]) {
		t.Fatalf("gate key: %v", err)
	}
	// Nothing generated in the data directory, nothing written in the mount.
	for _, kind := range []string{"ed25519", "rsa", "ecdsa"} {
		if _, err := os.Stat(d.HostKeyPath(kind)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s host key generated in the data directory: %v", kind, err)
		}
	}
	if _, err := os.Stat(d.GateKeyPath()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("gate key generated in the data directory: %v", err)
	}
	ents, _ := os.ReadDir(mount)
	if len(ents) != 5 { // ..TIMESTAMP, ..data and the three links
		t.Errorf("mount directory changed: %d entries", len(ents))
	}
}

func TestExternalKeysRefused(t *testing.T) {
	d, _, err := Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	mount, _ := secretVolume(t, 0o400, map[string]string{"a": sshkeys.Ed25519, "b": sshkeys.Ed25519})
	wide, _ := secretVolume(t, 0o644, map[string]string{"k": sshkeys.Ed25519}) // the kubelet's default mode
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("not a key\n"), 0o400)
	missing := filepath.Join(mount, "ssh_host_ed25519_key")
	for _, tt := range []struct {
		name string
		k    KeyFiles
		want string
	}{
		{"missing host key", KeyFiles{Host: []string{missing}}, "keys.host_key_files: " + missing + ": does not exist (a configured key is never generated"},
		{"missing gate key", KeyFiles{Gate: missing}, "keys.gate_key_file: " + missing + ": does not exist"},
		{"world-readable", KeyFiles{Host: []string{filepath.Join(wide, "k")}}, filepath.Join(wide, "k") + ": mode 0644: others may read it, refusing"},
		{"two of a type", KeyFiles{Host: []string{filepath.Join(mount, "a"), filepath.Join(mount, "b")}}, "a second ed25519 host key"},
		{"not a key", KeyFiles{Host: []string{junk}}, junk + ": not an OpenSSH or PEM private key"},
	} {
		d.Keys = KeyFiles{}
		if err := d.UseKeys(tt.k); err != nil {
			t.Fatalf("%s: UseKeys: %v", tt.name, err)
		}
		var err error
		if tt.k.Gate != "" {
			_, err = d.GateKey()
		} else {
			_, err = d.HostKeys(false)
		}
		var ke *KeyFileError
		if !errors.As(err, &ke) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing configured key was generated: %v", err)
	}
	if _, err := os.Stat(d.HostKeyPath("ed25519")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a host key was generated in the data directory: %v", err)
	}
	// A file inside the data directory is the gate's own, not the operator's.
	err = d.UseKeys(KeyFiles{HostCA: filepath.Join(d.Path, "ca", "host_ca")})
	if err == nil || !strings.Contains(err.Error(), "keys.host_ca_key_file: ") || !strings.Contains(err.Error(), "inside the data directory") {
		t.Errorf("key inside the data directory: %v", err)
	}
}

func TestExternalTOTPKey(t *testing.T) {
	d, _, err := Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.TOTPKey(); ok {
		t.Fatal("a TOTP key file without one configured")
	}
	dir := t.TempDir()
	good, short := filepath.Join(dir, "totp"), filepath.Join(dir, "short")
	os.WriteFile(good, []byte(strings.Repeat("k", 32)), 0o440)
	os.WriteFile(short, []byte("k\n"), 0o400)
	d.UseKeys(KeyFiles{TOTP: good})
	if k, ok, err := d.TOTPKey(); !ok || err != nil || len(k) != 32 {
		t.Errorf("good: %d %v %v", len(k), ok, err)
	}
	d.UseKeys(KeyFiles{TOTP: short})
	if _, _, err := d.TOTPKey(); err == nil || !strings.Contains(err.Error(), "want 32 bytes, have 2") {
		t.Errorf("short: %v", err)
	}
}

func same(a, b ssh.PublicKey) bool { return string(a.Marshal()) == string(b.Marshal()) }
