package config

import (
	"regexp"
	"time"
)

// Kubernetes configures the kubernetes target backend (kubernetes targets:
// `target add --kubernetes`). It is on when Kubeconfig is set or the gate
// runs in a cluster (its service account).
type Kubernetes struct {
	Kubeconfig      string   `yaml:"kubeconfig"`        // "" : the in-cluster service account
	Namespace       string   `yaml:"namespace"`         // for targets without --namespace; "": the gate's own in a cluster, else "default"
	Namespaces      []string `yaml:"namespaces"`        // also searched for orphaned pods at start
	AgentImage      string   `yaml:"agent_image"`       // image holding /sshgate-agent (the pod's installer container)
	ImagePullPolicy string   `yaml:"image_pull_policy"` // Always, IfNotPresent or Never
	AllowRoot       bool     `yaml:"allow_root"`        // pods may run as uid 0
	ReadonlyRootfs  bool     `yaml:"readonly_rootfs"`   // read-only root filesystem (emptyDir /tmp)
	DefaultMemory   Size     `yaml:"default_memory"`    // limit for targets without --memory; 0: no limit
	StartTimeout    Duration `yaml:"start_timeout"`     // a pod's create to Running
	IdleTTL         Duration `yaml:"idle_ttl"`          // per-user pods without --idle-ttl
	PoolIdleTTL     Duration `yaml:"pool_idle_ttl"`     // a pool not used this long is drained
	AgentTimeout    Duration `yaml:"agent_timeout"`     // wait for the agent's first byte
	OpenTimeout     Duration `yaml:"open_timeout"`      // a whole pod start, API calls included
	Mux             bool     `yaml:"mux"`               // one long-lived agent exec per warm pod, a stream per connection; false: an exec per connection
	ExecProtocol    string   `yaml:"exec_protocol"`     // spdy (WebSocket if the upgrade fails) or websocket (SPDY if it fails)
}

func defaultKubernetes() Kubernetes {
	return Kubernetes{
		AgentImage:      "sshgate/agent:latest",
		ImagePullPolicy: "IfNotPresent",
		DefaultMemory:   DefaultDockerMemory,
		StartTimeout:    Duration(60 * time.Second),
		IdleTTL:         Duration(15 * time.Minute),
		PoolIdleTTL:     Duration(30 * time.Minute),
		AgentTimeout:    Duration(15 * time.Second),
		OpenTimeout:     Duration(90 * time.Second),
		Mux:             true,
		ExecProtocol:    "spdy",
	}
}

var k8sNamespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func (k Kubernetes) validate(bad func(key, format string, args ...any)) {
	if k.Namespace != "" && !k8sNamespaceRE.MatchString(k.Namespace) {
		bad("kubernetes.namespace", "%q is not a namespace name (a DNS label)", k.Namespace)
	}
	for _, ns := range k.Namespaces {
		if !k8sNamespaceRE.MatchString(ns) {
			bad("kubernetes.namespaces", "%q is not a namespace name (a DNS label)", ns)
		}
	}
	if k.AgentImage == "" {
		bad("kubernetes.agent_image", "is empty")
	}
	switch k.ImagePullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		bad("kubernetes.image_pull_policy", "%q is not Always, IfNotPresent or Never", k.ImagePullPolicy)
	}
	if k.ExecProtocol != "spdy" && k.ExecProtocol != "websocket" {
		bad("kubernetes.exec_protocol", "%q is not spdy or websocket", k.ExecProtocol)
	}
	if k.DefaultMemory != 0 && k.DefaultMemory < 6<<20 {
		bad("kubernetes.default_memory", "%d bytes is below 6MiB (0: no limit)", int64(k.DefaultMemory))
	}
	for _, t := range []struct {
		key      string
		v        Duration
		min, max time.Duration
	}{
		{"start_timeout", k.StartTimeout, time.Second, 30 * time.Minute},
		{"idle_ttl", k.IdleTTL, time.Second, 30 * 24 * time.Hour},
		{"pool_idle_ttl", k.PoolIdleTTL, time.Second, 30 * 24 * time.Hour},
		{"agent_timeout", k.AgentTimeout, time.Second, 10 * time.Minute},
		{"open_timeout", k.OpenTimeout, time.Second, 30 * time.Minute},
	} {
		if t.v.D() < t.min || t.v.D() > t.max {
			bad("kubernetes."+t.key, "%s is out of range (%s to %s)", t.v.D(), t.min, t.max)
		}
	}
}
