package config

import (
	"path/filepath"
	"time"
)

func (d Docker) validate(bad func(key, format string, args ...any)) {
	switch d.Transport {
	case "", "socket", "exec":
	default:
		bad("docker.transport", "%q is not socket or exec", d.Transport)
	}
	if d.ReadonlyRootfs && d.Transport == "exec" {
		bad("docker.readonly_rootfs", "needs the socket transport (the exec transport copies the agent into the root filesystem)")
	}
	for _, m := range d.DenyMounts {
		if !filepath.IsAbs(m) || filepath.Clean(m) != m {
			bad("docker.deny_mounts", "%q is not an absolute, clean path", m)
		}
	}
	if d.DefaultMemory != 0 && d.DefaultMemory < 6<<20 {
		bad("docker.default_memory", "%d bytes is below Docker's minimum of 6MiB (0: no limit)", int64(d.DefaultMemory))
	}
	if d.DefaultPids < 1 || d.DefaultPids > 1<<22 {
		bad("docker.default_pids", "%d is out of range (1 to 4194304)", d.DefaultPids)
	}
	for _, t := range []struct {
		key      string
		v        Duration
		min, max time.Duration
	}{
		{"idle_ttl", d.IdleTTL, time.Second, 30 * 24 * time.Hour},
		{"pool_idle_ttl", d.PoolIdleTTL, time.Second, 30 * 24 * time.Hour},
		{"agent_timeout", d.AgentTimeout, time.Second, 10 * time.Minute},
		{"remove_timeout", d.RemoveTimeout, time.Second, 10 * time.Minute},
		{"open_timeout", d.OpenTimeout, time.Second, 30 * time.Minute},
	} {
		if t.v.D() < t.min || t.v.D() > t.max {
			bad("docker."+t.key, "%s is out of range (%s to %s)", t.v.D(), t.min, t.max)
		}
	}
}
