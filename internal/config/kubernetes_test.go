package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKubernetesConfig(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sshgate.yaml")
	yml := "kubernetes:\n  kubeconfig: /etc/sshgate/kubeconfig\n  namespace: labs\n  agent_image: reg/agent:1\n  image_pull_policy: Never\n  start_timeout: 20s\n"
	if err := os.WriteFile(f, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	k := c.Kubernetes
	if k.Kubeconfig != "/etc/sshgate/kubeconfig" || k.Namespace != "labs" || k.AgentImage != "reg/agent:1" || k.ImagePullPolicy != "Never" ||
		k.StartTimeout.D() != 20*time.Second || k.IdleTTL.D() != 15*time.Minute || k.DefaultMemory != DefaultDockerMemory || !k.Mux || k.ExecProtocol != "spdy" {
		t.Errorf("loaded %+v", k)
	}

	if err := os.WriteFile(f, []byte(yml+"  mux: false\n  exec_protocol: websocket\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(f); err != nil || c.Kubernetes.Mux || c.Kubernetes.ExecProtocol != "websocket" {
		t.Errorf("mux: false, exec_protocol: websocket: %v, mux %v, %q", err, c.Kubernetes.Mux, c.Kubernetes.ExecProtocol)
	}

	var got []string
	bad := func(key, format string, args ...any) { got = append(got, key) }
	b := defaultKubernetes()
	b.Namespace, b.Namespaces, b.AgentImage, b.ImagePullPolicy = "Bad_NS", []string{"ok", "-no"}, "", "Sometimes"
	b.DefaultMemory, b.StartTimeout, b.ExecProtocol = 1024, Duration(0), "http2"
	b.validate(bad)
	want := "kubernetes.namespace kubernetes.namespaces kubernetes.agent_image kubernetes.image_pull_policy kubernetes.exec_protocol kubernetes.default_memory kubernetes.start_timeout"
	if strings.Join(got, " ") != want {
		t.Errorf("problems %v, want %s", got, want)
	}
	got = nil
	defaultKubernetes().validate(bad)
	if len(got) != 0 {
		t.Errorf("defaults: %v", got)
	}
}
