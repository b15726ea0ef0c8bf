package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// installEnvPrefix names the files --install writes: each environment
// variable SSHGATE_FILE_<name>=<octal mode>:<base64 data> becomes DIR/<name>.
const installEnvPrefix = "SSHGATE_FILE_"

// install copies the running binary to dir/sshgate-agent (0555) and writes
// the files named in env (see installEnvPrefix). It is the postStart hook
// of a Kubernetes pod's installer container, whose image has no shell or
// cp: the agent installs itself into a shared emptyDir. Names are single
// path elements only.
func install(dir string, env []string) error {
	if !filepath.IsAbs(dir) {
		return usageError{fmt.Sprintf("--install %q: want an absolute directory", dir)}
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		exe, eerr := os.Executable()
		if eerr != nil {
			return fmt.Errorf("find own binary: %w", err)
		}
		if self, err = os.Open(exe); err != nil {
			return fmt.Errorf("open own binary: %w", err)
		}
	}
	defer self.Close()
	if err := writeFile(filepath.Join(dir, "sshgate-agent"), self, 0o555); err != nil {
		return err
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		name, ok := strings.CutPrefix(k, installEnvPrefix)
		if !ok {
			continue
		}
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			return usageError{fmt.Sprintf("%s: bad file name %q", k, name)}
		}
		ms, data, ok := strings.Cut(v, ":")
		mode, err := strconv.ParseUint(ms, 8, 32)
		if !ok || err != nil || mode > 0o777 {
			return usageError{fmt.Sprintf("%s: want MODE:BASE64", k)}
		}
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return usageError{fmt.Sprintf("%s: %v", k, err)}
		}
		if err := writeFile(filepath.Join(dir, name), strings.NewReader(string(b)), os.FileMode(mode)); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("install %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}

// hold blocks until SIGTERM or SIGINT: the process of a pod's installer
// container, whose postStart hook (--install) did the work. It holds no
// files and no children; the emptyDir it filled lives as long as the pod.
func hold() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}
