package container

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// keys are the per-container credentials: the agent's host key (the gate
// pins its public half) and the one-time key the gate logs in with (the
// agent's authorized_keys holds its public half). A fresh pair of each per
// container; nothing is reused across containers.
type keys struct {
	hostPEM   []byte        // OpenSSH private key of the agent
	hostPub   ssh.PublicKey // pinned by the gate
	client    ssh.Signer    // the gate logs in with this
	authLines []byte        // authorized_keys content for the agent
}

func newKeys() (*keys, error) {
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate agent host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(hostPriv, "sshgate-agent host key")
	if err != nil {
		return nil, fmt.Errorf("encode agent host key: %w", err)
	}
	hostPub, err := ssh.NewPublicKey(hostPriv.Public())
	if err != nil {
		return nil, err
	}
	_, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate login key: %w", err)
	}
	signer, err := ssh.NewSignerFromSigner(clientPriv)
	if err != nil {
		return nil, err
	}
	line := bytes.TrimSpace(ssh.MarshalAuthorizedKey(signer.PublicKey()))
	line = append(line, " sshgate\n"...)
	return &keys{hostPEM: pem.EncodeToMemory(block), hostPub: hostPub, client: signer, authLines: line}, nil
}

// gateDir is the gate-owned directory of one container:
//
//	ContainersDir/ID/host_key         agent host key (secret)
//	ContainersDir/ID/authorized_keys  the gate's one-time public key
//	ContainersDir/ID/gate.sock        the gate listens; the agent dials
//
// Permissions: ContainersDir is 0700 and owned by the gate, so no other host
// user reaches anything below it, and each container sees only its own
// directory (bind-mounted read-only at /run/sshgate). Inside, the agent runs
// as the container user, which must read host_key and connect to the socket.
// When the user is numeric (and the engine does not remap user namespaces)
// the directory and files are chowned to it, host_key 0400, socket 0600, so
// even other uids inside the same container cannot read the key. Otherwise
// (a user name resolved only by the image, or an engine with userns-remap)
// the files are world-readable (0444, socket 0666, directory 0755): only the
// container's own processes can see them, and the key is worth nothing once
// that container is gone. A container never sees another container's
// directory, so no key is readable across containers.
type gateDir struct {
	id   string
	path string
	uid  int // -1: not chowned
	gid  int
	// shared: the directory of a container in the shared registry (its
	// path from the store): only the files a gate puts there are removed.
	shared bool
}

func createGateDir(parent, id string, k *keys, uid, gid int) (*gateDir, error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("create containers directory: %w", err)
	}
	if err := os.Chmod(parent, 0o700); err != nil {
		return nil, fmt.Errorf("containers directory: %w", err)
	}
	d := &gateDir{id: id, path: filepath.Join(parent, id), uid: -1, gid: -1}
	if err := os.Mkdir(d.path, 0o700); err != nil {
		return nil, fmt.Errorf("create container directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(d.path)
		}
	}()
	if uid >= 0 {
		if err := os.Chown(d.path, uid, gid); err == nil {
			d.uid, d.gid = uid, gid
		}
		// EPERM (the gate is not root): fall back to world-readable modes.
	}
	keyMode, dirMode := os.FileMode(0o444), os.FileMode(0o755)
	if d.uid >= 0 {
		keyMode, dirMode = 0o400, 0o500
	}
	if err := d.writeFile(hostKeyFile, k.hostPEM, keyMode); err != nil {
		return nil, err
	}
	if err := d.writeFile(authorizedKeysFile, k.authLines, 0o444); err != nil {
		return nil, err
	}
	if err := os.Chmod(d.path, dirMode); err != nil {
		return nil, fmt.Errorf("container directory: %w", err)
	}
	ok = true
	return d, nil
}

func (d *gateDir) writeFile(name string, data []byte, mode os.FileMode) error {
	p := filepath.Join(d.path, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if d.uid >= 0 {
		if err := os.Chown(p, d.uid, d.gid); err != nil {
			return fmt.Errorf("chown %s: %w", name, err)
		}
	}
	return os.Chmod(p, mode)
}

// listen creates the unix socket name in the directory and returns its
// listener. Paths longer than sun_path allows are bound through
// /proc/self/fd/N of the opened directory.
func (d *gateDir) listen(name string) (*net.UnixListener, error) {
	p := filepath.Join(d.path, name)
	addr := p
	var dirf *os.File
	if len(p) >= 100 {
		f, err := os.Open(d.path)
		if err != nil {
			return nil, fmt.Errorf("open container directory: %w", err)
		}
		dirf = f
		addr = "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) + "/" + name
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if dirf != nil {
		dirf.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", p, err)
	}
	// The listener must not unlink a /proc/self/fd path on Close.
	l.SetUnlinkOnClose(false)
	mode := os.FileMode(0o666)
	if d.uid >= 0 {
		mode = 0o600
		if err := os.Chown(p, d.uid, d.gid); err != nil {
			l.Close()
			os.Remove(p)
			return nil, fmt.Errorf("chown socket: %w", err)
		}
	}
	if err := os.Chmod(p, mode); err != nil {
		l.Close()
		os.Remove(p)
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return l, nil
}

func (d *gateDir) remove() error {
	if d == nil {
		return nil
	}
	// The directory is 0500/0555: RemoveAll needs write permission on it,
	// which root has anyway, but a non-root gate does not.
	_ = os.Chmod(d.path, 0o700)
	if !d.shared {
		return os.RemoveAll(d.path)
	}
	ents, err := os.ReadDir(d.path)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if n == hostKeyFile || n == authorizedKeysFile || strings.HasSuffix(n, ".sock") || strings.HasSuffix(n, ".keys") {
			os.Remove(filepath.Join(d.path, n))
		}
	}
	return os.Remove(d.path)
}
