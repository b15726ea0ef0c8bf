package webhook

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/route"
)

// Allow is what the operator lets the config webhook ask for. The zero
// value allows no override at all.
type Allow struct {
	Images       []string // exact image references, or prefixes ending in "*"
	MountSources []string // host directories (absolute, clean) a mount source must lie within
	MaxMemory    int64    // bytes; 0: memory may not be overridden
	MaxCPUs      float64  // 0: cpus may not be overridden
	MaxPids      int64    // 0: pids may not be overridden
	Forwarding   bool     // the reply may allow port forwarding on the target it chooses
	// Resolve resolves symlinks in a host path (filepath.EvalSymlinks when nil).
	Resolve func(string) (string, error)
}

// ImageAllowed reports whether image matches the allow list.
func (a Allow) ImageAllowed(image string) bool {
	for _, p := range a.Images {
		if pre, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(image, pre) {
				return true
			}
		} else if p == image {
			return true
		}
	}
	return false
}

// Apply returns spec with the override o applied, or an error naming the
// first ask outside the bounds. It never grants what the spec type cannot
// express (privileged, capabilities, host network): such asks are refused
// when the reply is parsed. An overridden spec never uses a warm pool.
func (a Allow) Apply(spec gate.DockerSpec, o DockerOverride) (gate.DockerSpec, error) {
	out := spec
	out.Env = slices.Clone(spec.Env)
	out.Mounts = slices.Clone(spec.Mounts)
	out.Cmd = slices.Clone(spec.Cmd)
	out.Pool = 0
	if o.Image != "" {
		if !a.ImageAllowed(o.Image) {
			return spec, fmt.Errorf("image %q is not in config_webhook.allow.images", route.Printable(o.Image))
		}
		out.Image = o.Image
	}
	if len(o.Env) > 0 {
		keys := make([]string, 0, len(o.Env))
		for k := range o.Env {
			if !ValidEnvName(k) {
				return spec, fmt.Errorf("env name %q is invalid", route.Printable(k))
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out.Env = slices.DeleteFunc(out.Env, func(e string) bool {
			k, _, _ := strings.Cut(e, "=")
			_, over := o.Env[k]
			return over
		})
		for _, k := range keys {
			out.Env = append(out.Env, k+"="+o.Env[k])
		}
	}
	for _, m := range o.Mounts {
		if err := a.checkMount(m); err != nil {
			return spec, err
		}
		out.Mounts = append(out.Mounts, m)
	}
	if o.Memory != 0 {
		if o.Memory < 0 || a.MaxMemory <= 0 || o.Memory > a.MaxMemory {
			return spec, fmt.Errorf("memory %d is above config_webhook.allow.max_memory (%d)", o.Memory, a.MaxMemory)
		}
		out.Memory = o.Memory
	}
	if o.CPUs != 0 {
		if !(o.CPUs > 0) || a.MaxCPUs <= 0 || o.CPUs > a.MaxCPUs || math.IsInf(o.CPUs, 0) {
			return spec, fmt.Errorf("cpus %g is above config_webhook.allow.max_cpus (%g)", o.CPUs, a.MaxCPUs)
		}
		out.NanoCPUs = int64(o.CPUs * 1e9)
	}
	if o.Pids != 0 {
		if o.Pids < 0 || a.MaxPids <= 0 || o.Pids > a.MaxPids {
			return spec, fmt.Errorf("pids %d is above config_webhook.allow.max_pids (%d)", o.Pids, a.MaxPids)
		}
		out.Pids = o.Pids
	}
	return out, nil
}

// checkMount checks a mount "SRC:DST[:ro|:rw]": SRC must be absolute and
// clean (no "..", no "//", no trailing "/"), lie within an allowed source,
// and still lie within it once symlinks are resolved on both sides.
func (a Allow) checkMount(m string) error {
	parts := strings.Split(m, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return fmt.Errorf("mount %q: want SRC:DST[:ro]", route.Printable(m))
	}
	src, dst := parts[0], parts[1]
	if len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
		return fmt.Errorf("mount %q: option must be ro or rw", route.Printable(m))
	}
	if !filepath.IsAbs(src) || filepath.Clean(src) != src || !filepath.IsAbs(dst) || filepath.Clean(dst) != dst {
		return fmt.Errorf("mount %q: paths must be absolute and clean", route.Printable(m))
	}
	for _, seg := range strings.Split(src, "/") {
		if seg == ".." {
			return fmt.Errorf("mount %q: \"..\" is not allowed", route.Printable(m))
		}
	}
	resolve := a.Resolve
	if resolve == nil {
		resolve = filepath.EvalSymlinks
	}
	for _, root := range a.MountSources {
		root = filepath.Clean(root)
		if !within(src, root) {
			continue
		}
		realRoot, err := resolve(root)
		if err != nil {
			return fmt.Errorf("mount %q: allowed source %s: %w", route.Printable(m), root, err)
		}
		realSrc, err := resolve(src)
		if err != nil {
			return fmt.Errorf("mount %q: source: %w", route.Printable(m), err)
		}
		if !within(realSrc, realRoot) {
			return fmt.Errorf("mount %q: source resolves to %s, outside %s", route.Printable(m), realSrc, root)
		}
		return nil
	}
	return errors.New("mount source " + route.Printable(src) + " is not in config_webhook.allow.mount_sources")
}

// within reports whether p is base or below it (both clean and absolute).
func within(p, base string) bool {
	if base == "/" {
		return true
	}
	return p == base || strings.HasPrefix(p, base+"/")
}
