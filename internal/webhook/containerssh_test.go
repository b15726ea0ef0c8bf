package webhook

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
)

// A config server written in Go against Docker's own types marshals every
// field, most of them zero; ContainerSSH takes such a reply, and so must
// the gate, mapping what it asks for.
func goServerReply(t *testing.T, c container.Config, h container.HostConfig) []byte {
	t.Helper()
	reply := map[string]any{
		"metadata":    map[string]any{"team": map[string]any{"value": "ops", "sensitive": false}},
		"environment": map[string]any{"FROM_SERVER": map[string]any{"value": "yes", "sensitive": false}},
		"files":       map[string]any{},
		"config": map[string]any{
			"backend": "docker",
			"docker": map[string]any{
				"execution": map[string]any{
					"container":       c,
					"host":            h,
					"mode":            "connection",
					"imagePullPolicy": "IfNotPresent",
					"agentPath":       "/usr/bin/containerssh-agent",
				},
			},
		},
	}
	b, err := json.Marshal(reply)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestContainerSSHReplyFromDockerTypes(t *testing.T) {
	pids := int64(64)
	c := container.Config{Image: "sshgate-test/busybox:latest", Env: []string{"LANG=C.UTF-8", "EMPTY="}}
	h := container.HostConfig{Binds: []string{"/srv/shared/a:/data:ro"}}
	h.Memory = 256 << 20
	h.NanoCPUs = 500_000_000
	h.PidsLimit = &pids
	r, err := ParseConfigReply(goServerReply(t, c, h))
	if err != nil {
		t.Fatal(err)
	}
	d := r.Docker
	if d == nil {
		t.Fatal("no override mapped")
	}
	if d.Image != c.Image || d.Memory != 256<<20 || d.CPUs != 0.5 || d.Pids != 64 {
		t.Errorf("mapped %+v", d)
	}
	if d.Env["LANG"] != "C.UTF-8" || d.Env["FROM_SERVER"] != "yes" || d.Env["EMPTY"] != "" || len(d.Env) != 3 {
		t.Errorf("env %v", d.Env)
	}
	if len(d.Mounts) != 1 || d.Mounts[0] != "/srv/shared/a:/data:ro" {
		t.Errorf("mounts %q", d.Mounts)
	}
	if r.Target != "" || r.Forwarding {
		t.Errorf("a ContainerSSH reply chose a target or forwarding: %+v", r)
	}
}

func TestContainerSSHReplyRefusesWhatItCannotTake(t *testing.T) {
	refuse := map[string]func(*container.Config, *container.HostConfig){
		"privileged":   func(_ *container.Config, h *container.HostConfig) { h.Privileged = true },
		"capabilities": func(_ *container.Config, h *container.HostConfig) { h.CapAdd = []string{"SYS_ADMIN"} },
		"host network": func(_ *container.Config, h *container.HostConfig) { h.NetworkMode = "host" },
		"pid host":     func(_ *container.Config, h *container.HostConfig) { h.PidMode = "host" },
		"devices": func(_ *container.Config, h *container.HostConfig) {
			h.Devices = []container.DeviceMapping{{PathOnHost: "/dev/sda", PathInContainer: "/dev/sda"}}
		},
		"user root":      func(c *container.Config, _ *container.HostConfig) { c.User = "0" },
		"entrypoint":     func(c *container.Config, _ *container.HostConfig) { c.Entrypoint = []string{"/bin/sh"} },
		"security opt":   func(_ *container.Config, h *container.HostConfig) { h.SecurityOpt = []string{"seccomp=unconfined"} },
		"unlimited pids": func(_ *container.Config, h *container.HostConfig) { p := int64(-1); h.PidsLimit = &p },
		"bad env":        func(c *container.Config, _ *container.HostConfig) { c.Env = []string{"NOEQUALS"} },
		"bad image":      func(c *container.Config, _ *container.HostConfig) { c.Image = "Bad Image" },
		"nul in bind":    func(_ *container.Config, h *container.HostConfig) { h.Binds = []string{"/a\x00:/b"} },
		"userns host":    func(_ *container.Config, h *container.HostConfig) { h.UsernsMode = "host" },
		"volume driver":  func(_ *container.Config, h *container.HostConfig) { h.VolumeDriver = "x" },
	}
	for name, mutate := range refuse {
		t.Run(name, func(t *testing.T) {
			c := container.Config{Image: "sshgate-test/busybox:latest"}
			h := container.HostConfig{}
			mutate(&c, &h)
			if r, err := ParseConfigReply(goServerReply(t, c, h)); err == nil {
				t.Fatalf("accepted: %+v", r.Docker)
			} else if !strings.HasPrefix(err.Error(), "config reply: ") {
				t.Errorf("error %q does not say where", err)
			}
		})
	}
}

func TestContainerSSHReplyShapes(t *testing.T) {
	tests := []struct {
		name, in string
		image    string
		mem      int64
		cpus     float64
		env      map[string]string
		wantErr  string
	}{
		{name: "documented docker example", in: `{"config":{"docker":{"execution":{"container":{"image":"busybox:1"}}}}}`, image: "busybox:1"},
		{name: "keys in Docker's case", in: `{"config":{"backend":"docker","docker":{"execution":{"container":{"Image":"busybox:1","Env":["A=1"]},"host":{"Memory":1048576}}}}}`,
			image: "busybox:1", mem: 1 << 20, env: map[string]string{"A": "1"}},
		{name: "kubernetes pod", in: `{"config":{"backend":"kubernetes","kubernetes":{"pod":{"metadata":{"generateName":"containerssh-"},"spec":{"containers":[{"name":"shell","image":"busybox:2","env":[{"name":"B","value":"2"}],"resources":{"limits":{"memory":"512Mi","cpu":"250m"},"requests":{"memory":"64Mi"}}}]}}}}}`,
			image: "busybox:2", mem: 512 << 20, cpus: 0.25, env: map[string]string{"B": "2"}},
		{name: "empty config changes nothing", in: `{"config":{}}`},
		{name: "null config changes nothing", in: `{"config":null}`},
		{name: "zero unsupported fields are fine", in: `{"config":{"docker":{"execution":{"host":{"Privileged":false,"CapAdd":null,"NetworkMode":""}}}}}`},
		{name: "key twice in two cases", in: `{"config":{"docker":{"execution":{"container":{"image":"a:1","Image":"b:1"}}}}}`, wantErr: "appears twice"},
		{name: "config twice", in: `{"config":{},"Config":{}}`, wantErr: "appears twice"},
		{name: "docker connection is the gate's", in: `{"config":{"docker":{"connection":{"host":"tcp://evil:2375"}}}}`, wantErr: "config.docker.connection is not supported"},
		{name: "another section", in: `{"config":{"security":{"forwarding":{"reverseForwardingMode":"enable"}}}}`, wantErr: "config.security is not supported"},
		{name: "files", in: `{"config":{},"files":{"/etc/passwd":"eA=="}}`, wantErr: "files is not supported"},
		{name: "session mode", in: `{"config":{"docker":{"execution":{"mode":"session"}}}}`, wantErr: "mode"},
		{name: "pull always", in: `{"config":{"docker":{"execution":{"imagePullPolicy":"Always"}}}}`, wantErr: "never pulls"},
		{name: "other backend", in: `{"config":{"backend":"sshproxy"}}`, wantErr: "sshproxy"},
		{name: "two sections without backend", in: `{"config":{"docker":{"execution":{"container":{"image":"a:1"}}},"kubernetes":{"pod":{"spec":{"containers":[{"image":"b:1"}]}}}}}`, wantErr: "both"},
		{name: "section against backend", in: `{"config":{"backend":"docker","kubernetes":{"pod":{"spec":{"containers":[{"image":"b:1"}]}}}}}`, wantErr: "backend is docker"},
		{name: "pod namespace", in: `{"config":{"kubernetes":{"pod":{"metadata":{"namespace":"kube-system"}}}}}`, wantErr: "namespace is not supported"},
		{name: "pod host path", in: `{"config":{"kubernetes":{"pod":{"spec":{"volumes":[{"name":"h","hostPath":{"path":"/"}}]}}}}}`, wantErr: "volumes is not supported"},
		{name: "pod host network", in: `{"config":{"kubernetes":{"pod":{"spec":{"hostNetwork":true}}}}}`, wantErr: "hostNetwork is not supported"},
		{name: "privileged pod container", in: `{"config":{"kubernetes":{"pod":{"spec":{"containers":[{"image":"a:1","securityContext":{"privileged":true}}]}}}}}`, wantErr: "securityContext is not supported"},
		{name: "env from a secret", in: `{"config":{"kubernetes":{"pod":{"spec":{"containers":[{"image":"a:1","env":[{"name":"T","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}]}]}}}}}`, wantErr: "valueFrom is not supported"},
		{name: "two pod containers", in: `{"config":{"kubernetes":{"pod":{"spec":{"containers":[{"image":"a:1"},{"image":"b:1"}]}}}}}`, wantErr: "one container"},
		{name: "bad memory quantity", in: `{"config":{"kubernetes":{"pod":{"spec":{"containers":[{"image":"a:1","resources":{"limits":{"memory":"lots"}}}]}}}}}`, wantErr: "memory quantity"},
		{name: "negative memory", in: `{"config":{"docker":{"execution":{"host":{"Memory":-1}}}}}`, wantErr: "at least 0"},
		{name: "fractional memory", in: `{"config":{"docker":{"execution":{"host":{"Memory":1.5}}}}}`, wantErr: "whole number"},
		{name: "image not a string", in: `{"config":{"docker":{"execution":{"container":{"image":7}}}}}`, wantErr: "want a string"},
		{name: "trailing data", in: `{"config":{}} {}`, wantErr: "trailing"},
		{name: "bad environment name", in: `{"config":{},"environment":{"A-B":{"value":"x"}}}`, wantErr: "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseConfigReply([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.image == "" && tt.mem == 0 && tt.env == nil {
				if r.Docker != nil {
					t.Fatalf("override %+v from a reply that asks nothing", r.Docker)
				}
				return
			}
			d := r.Docker
			if d == nil || d.Image != tt.image || d.Memory != tt.mem || d.CPUs != tt.cpus || len(d.Env) != len(tt.env) {
				t.Fatalf("mapped %+v", d)
			}
			for k, v := range tt.env {
				if d.Env[k] != v {
					t.Errorf("env %s=%q, want %q", k, d.Env[k], v)
				}
			}
		})
	}
}

func TestQuantities(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512Mi": 512 << 20, "1Gi": 1 << 30, "1G": 1e9, "128k": 128e3, "1.5Gi": 3 << 29} {
		if got, err := quantity(in); err != nil || got != want {
			t.Errorf("quantity(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "Mi", "-1Mi", "NaN", "Inf", "1e400", "1Xi", "0"} {
		if _, err := quantity(in); err == nil {
			t.Errorf("quantity(%q) accepted", in)
		}
	}
	for in, want := range map[string]float64{"250m": 0.25, "2": 2, "1.5": 1.5} {
		if got, err := cpuQuantity(in); err != nil || got != want {
			t.Errorf("cpuQuantity(%q) = %g, %v; want %g", in, got, err, want)
		}
	}
	for _, in := range []string{"", "m", "-1", "NaN", "x"} {
		if _, err := cpuQuantity(in); err == nil {
			t.Errorf("cpuQuantity(%q) accepted", in)
		}
	}
}
