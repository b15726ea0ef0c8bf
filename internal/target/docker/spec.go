package docker

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types/mount"

	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// In-container paths of the gate (see target/container): no mount may
// shadow them.
const (
	DirMount   = lifecycle.DirMount
	AgentMount = lifecycle.AgentMount
)

// DefaultDenyMounts are host paths never bind-mounted into a container, nor
// any directory containing one of them (so "/" and "/var" are refused too,
// since they hold the engine socket).
var DefaultDenyMounts = []string{
	"/proc", "/sys", "/dev", "/etc", "/boot",
	"/var/run/docker.sock", "/run/docker.sock",
	"/var/lib/docker", "/run/containerd", "/var/run/containerd", "/var/lib/containerd",
}

// ParseMount parses a DockerSpec mount "SRC:DST[:ro|:rw]" into a bind mount.
// SRC must be an absolute, existing host path (symlinks are resolved with
// resolve, which may be nil to skip resolution); it is refused when it is
// equal to, below, or above any path in deny. DST must be absolute and must
// not shadow the gate's own paths.
func ParseMount(s string, deny []string, resolve func(string) (string, error)) (mount.Mount, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return mount.Mount{}, fmt.Errorf("mount %q: want SRC:DST[:ro]", s)
	}
	src, dst := parts[0], parts[1]
	ro := false
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			ro = true
		case "rw":
		default:
			return mount.Mount{}, fmt.Errorf("mount %q: unknown option %q (ro or rw)", s, parts[2])
		}
	}
	if !filepath.IsAbs(src) {
		return mount.Mount{}, fmt.Errorf("mount %q: source must be an absolute path", s)
	}
	if !filepath.IsAbs(dst) {
		return mount.Mount{}, fmt.Errorf("mount %q: destination must be an absolute path", s)
	}
	if strings.ContainsRune(s, 0) || strings.ContainsAny(s, "\n,") {
		return mount.Mount{}, fmt.Errorf("mount %q: invalid character", s)
	}
	src, dst = filepath.Clean(src), filepath.Clean(dst)
	if dst == "/" || within(dst, DirMount) || within(dst, AgentMount) {
		return mount.Mount{}, fmt.Errorf("mount %q: destination %s is reserved", s, dst)
	}
	if err := checkDenied(src, deny); err != nil {
		return mount.Mount{}, fmt.Errorf("mount %q: %w", s, err)
	}
	if resolve != nil {
		real, err := resolve(src)
		if err != nil {
			return mount.Mount{}, fmt.Errorf("mount %q: source: %w", s, err)
		}
		if err := checkDenied(real, deny); err != nil {
			return mount.Mount{}, fmt.Errorf("mount %q: %s resolves to %s: %w", s, src, real, err)
		}
		src = real
	}
	return mount.Mount{Type: mount.TypeBind, Source: src, Target: dst, ReadOnly: ro,
		BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate}}, nil
}

func checkDenied(src string, deny []string) error {
	for _, d := range deny {
		if d == "" {
			continue
		}
		d = filepath.Clean(d)
		if within(src, d) {
			return fmt.Errorf("source %s is not allowed (under %s)", src, d)
		}
		if within(d, src) {
			return fmt.Errorf("source %s is not allowed (it contains %s)", src, d)
		}
	}
	return nil
}

// within reports whether p is base or below it (both clean and absolute).
func within(p, base string) bool {
	if base == "/" {
		return true
	}
	return p == base || strings.HasPrefix(p, base+"/")
}

// ContainerName turns a target name into a valid container name component:
// [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 40 characters.
func ContainerName(target, suffix string) string {
	var b strings.Builder
	for _, r := range target {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	name := b.String()
	if name == "" {
		name = "target"
	}
	return "sshgate-" + name + "-" + suffix
}

// checkNetwork refuses network modes that would break isolation.
func checkNetwork(n string) (string, error) {
	switch {
	case n == "" || n == "none":
		return "none", nil
	case n == "host":
		return "", errors.New(`network "host" is not allowed`)
	case strings.HasPrefix(n, "container:"):
		return "", fmt.Errorf("network %q is not allowed", n)
	}
	return n, nil
}
