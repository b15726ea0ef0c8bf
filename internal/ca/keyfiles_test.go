package ca

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestLoadWithKeyFiles(t *testing.T) {
	dataCA := filepath.Join(t.TempDir(), "ca")
	// A Secret volume holding the host CA only: HOST_CA -> ..data/host_ca.
	mount := filepath.Join(t.TempDir(), "keys")
	ts := filepath.Join(mount, "..2026_12_04_13_00_00.1")
	os.MkdirAll(ts, 0o755)
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := ssh.MarshalPrivateKey(k, "")
	os.WriteFile(filepath.Join(ts, "host_ca"), pem.EncodeToMemory(block), 0o400)
	os.Symlink(filepath.Base(ts), filepath.Join(mount, "..data"))
	os.Symlink("..data/host_ca", filepath.Join(mount, "host_ca"))
	ext := KeyFiles{Host: filepath.Join(mount, "host_ca")}

	created, err := InitWith(dataCA, ext)
	if err != nil || len(created) != 2 {
		t.Fatalf("InitWith: %v %v, want the user and client CAs only", created, err)
	}
	if _, err := os.Stat(filepath.Join(dataCA, HostKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a host CA was made in the data directory beside the configured one: %v", err)
	}
	c, err := LoadWith(dataCA, ext)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ssh.NewPublicKey(k.Public())
	if c.Host == nil || string(c.Host.PublicKey().Marshal()) != string(want.Marshal()) || c.User == nil || c.Client == nil {
		t.Fatalf("LoadWith: %+v", c)
	}
	// Configured but missing: an error naming the key and the file, never ErrNoCA.
	missing := filepath.Join(mount, "user_ca")
	_, err = LoadWith(t.TempDir(), KeyFiles{User: missing})
	var ke *KeyFileError
	if !errors.As(err, &ke) || errors.Is(err, ErrNoCA) || !strings.HasPrefix(err.Error(), "keys.user_ca_key_file: "+missing+": does not exist") {
		t.Errorf("missing: %v", err)
	}
	// Readable by others: refused.
	os.Chmod(filepath.Join(ts, "host_ca"), 0o444)
	if _, err := LoadWith(dataCA, ext); err == nil || !strings.Contains(err.Error(), "others may read it") {
		t.Errorf("0444: %v", err)
	}
}
