package webhook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/internal/gate"
)

func TestParseAuthReply(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		success bool
		wantErr bool
	}{
		{"success", `{"success":true,"authenticatedUsername":"bob","metadata":{"team":{"value":"ops","sensitive":false}},"environment":{"TOKEN":{"value":"x","sensitive":true}}}`, true, false},
		{"denied", `{"success":false}`, false, false},
		{"unknown fields tolerated", `{"success":true,"somethingNew":[1,2]}`, true, false},
		{"success as string", `{"success":"true"}`, false, true},
		{"success as number", `{"success":1}`, false, true},
		{"missing success", `{"authenticatedUsername":"bob"}`, false, false},
		{"not an object", `[true]`, false, true},
		{"null", `null`, false, true},
		{"empty", ``, false, true},
		{"truncated", `{"success":tr`, false, true},
		{"trailing data", `{"success":true} {"success":true}`, false, true},
		{"bad env name", `{"success":true,"environment":{"A=B":{"value":"x"}}}`, false, true},
		{"env name with dash", `{"success":true,"environment":{"A-B":{"value":"x"}}}`, false, true},
		{"NUL in value", `{"success":true,"environment":{"A":{"value":"x\u0000y"}}}`, false, true},
		{"huge value", `{"success":true,"metadata":{"a":{"value":"` + strings.Repeat("x", 5000) + `"}}}`, false, true},
		{"entry not an object", `{"success":true,"metadata":{"a":"b"}}`, false, true},
		{"Success in another case", `{"Success":true}`, false, true},
		{"SUCCESS in another case", `{"SUCCESS":true}`, false, true},
		{"success twice, true last", `{"success":false,"success":true}`, false, true},
		{"success twice, same value", `{"success":true,"success":true}`, false, true},
		{"user name in another case", `{"success":true,"AuthenticatedUsername":"root"}`, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseAuthReply([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if r.Success != tt.success {
				t.Errorf("success %v, want %v", r.Success, tt.success)
			}
		})
	}
}

func TestParseConfigReply(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"empty object changes nothing", `{}`, false},
		{"target and docker", `{"target":"box","login":"app","docker":{"image":"alpine:3","env":{"A":"1"},"mounts":["/srv/a:/a:ro"],"memory":1048576,"cpus":0.5,"pids":10}}`, false},
		{"privileged refused", `{"docker":{"image":"alpine","privileged":true}}`, true},
		{"capabilities refused", `{"docker":{"capAdd":["SYS_ADMIN"]}}`, true},
		{"network refused", `{"docker":{"network":"host"}}`, true},
		{"unknown top-level refused", `{"target":"x","user":"root"}`, true},
		{"target in another case refused", `{"Target":"x"}`, true},
		{"target twice refused", `{"target":"a","target":"b"}`, true},
		{"negative memory", `{"docker":{"memory":-1}}`, true},
		{"bad image", `{"docker":{"image":"--privileged"}}`, true},
		{"bad env", `{"docker":{"env":{"1A":"x"}}}`, true},
		{"mount with comma", `{"docker":{"mounts":["/a:/b,readonly"]}}`, true},
		{"not json", `<html>`, true},
		{"trailing", `{}x`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfigReply([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestAllowApply(t *testing.T) {
	root := t.TempDir()
	allowed := filepath.Join(root, "shared")
	outside := filepath.Join(root, "secret")
	for _, d := range []string{allowed, filepath.Join(allowed, "team"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(allowed, "escape")); err != nil {
		t.Fatal(err)
	}
	a := Allow{Images: []string{"sshgate-test/*", "alpine:3.20"}, MountSources: []string{allowed},
		MaxMemory: 512 << 20, MaxCPUs: 2, MaxPids: 256}
	base := gate.DockerSpec{Image: "sshgate-test/busybox:latest", Env: []string{"A=1", "B=2"}, Pool: 3}
	tests := []struct {
		name    string
		o       DockerOverride
		wantErr string
		check   func(t *testing.T, s gate.DockerSpec)
	}{
		{name: "nothing", check: func(t *testing.T, s gate.DockerSpec) {
			if s.Image != base.Image || s.Pool != 0 {
				t.Errorf("%+v", s)
			}
		}},
		{name: "image by prefix", o: DockerOverride{Image: "sshgate-test/other:1"}, check: func(t *testing.T, s gate.DockerSpec) {
			if s.Image != "sshgate-test/other:1" {
				t.Errorf("image %q", s.Image)
			}
		}},
		{name: "image exact", o: DockerOverride{Image: "alpine:3.20"}},
		{name: "image not allowed", o: DockerOverride{Image: "alpine:3.21"}, wantErr: "not in config_webhook.allow.images"},
		{name: "prefix is not a substring", o: DockerOverride{Image: "evil/sshgate-test/x"}, wantErr: "allow.images"},
		{name: "env replaces", o: DockerOverride{Env: map[string]string{"B": "3", "C": "4"}}, check: func(t *testing.T, s gate.DockerSpec) {
			if strings.Join(s.Env, ",") != "A=1,B=3,C=4" {
				t.Errorf("env %q", s.Env)
			}
		}},
		{name: "mount allowed", o: DockerOverride{Mounts: []string{allowed + "/team:/data:ro"}}, check: func(t *testing.T, s gate.DockerSpec) {
			if len(s.Mounts) != 1 || len(base.Mounts) != 0 {
				t.Errorf("mounts %q (base %q)", s.Mounts, base.Mounts)
			}
		}},
		{name: "mount root of allowlist", o: DockerOverride{Mounts: []string{allowed + ":/data"}}},
		{name: "mount outside", o: DockerOverride{Mounts: []string{outside + ":/data"}}, wantErr: "not in config_webhook.allow.mount_sources"},
		{name: "mount dotdot", o: DockerOverride{Mounts: []string{allowed + "/../secret:/data"}}, wantErr: "absolute and clean"},
		{name: "mount symlink escape", o: DockerOverride{Mounts: []string{allowed + "/escape:/data"}}, wantErr: "outside"},
		{name: "mount prefix trick", o: DockerOverride{Mounts: []string{allowed + "x:/data"}}, wantErr: "mount_sources"},
		{name: "mount relative", o: DockerOverride{Mounts: []string{"shared:/data"}}, wantErr: "absolute"},
		{name: "mount missing source", o: DockerOverride{Mounts: []string{allowed + "/nope:/data"}}, wantErr: "source"},
		{name: "mount bad option", o: DockerOverride{Mounts: []string{allowed + ":/data:z"}}, wantErr: "ro or rw"},
		{name: "memory within", o: DockerOverride{Memory: 256 << 20}, check: func(t *testing.T, s gate.DockerSpec) {
			if s.Memory != 256<<20 {
				t.Errorf("memory %d", s.Memory)
			}
		}},
		{name: "memory above", o: DockerOverride{Memory: 1 << 30}, wantErr: "max_memory"},
		{name: "cpus", o: DockerOverride{CPUs: 1.5}, check: func(t *testing.T, s gate.DockerSpec) {
			if s.NanoCPUs != 1_500_000_000 {
				t.Errorf("nanocpus %d", s.NanoCPUs)
			}
		}},
		{name: "cpus above", o: DockerOverride{CPUs: 3}, wantErr: "max_cpus"},
		{name: "pids above", o: DockerOverride{Pids: 1000}, wantErr: "max_pids"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := a.Apply(base, tt.o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
	// The zero Allow allows nothing.
	if _, err := (Allow{}).Apply(base, DockerOverride{Memory: 1}); err == nil {
		t.Error("zero Allow let memory through")
	}
	if _, err := (Allow{}).Apply(base, DockerOverride{Image: "sshgate-test/busybox:latest"}); err == nil {
		t.Error("zero Allow let an image through")
	}
}

func FuzzParseAuthReply(f *testing.F) {
	f.Add([]byte(`{"success":true,"authenticatedUsername":"bob","metadata":{"a":{"value":"b","sensitive":true}},"environment":{"X":{"value":"y"}}}`))
	f.Add([]byte(`{"success":false}`))
	f.Add([]byte(`{"success":"true"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseAuthReply(data)
		if err != nil {
			return
		}
		for k, e := range r.Environment {
			if !ValidEnvName(k) || strings.ContainsRune(e.Value, 0) || len(e.Value) > maxValueLen {
				t.Fatalf("accepted env %q=%q", k, e.Value)
			}
		}
		if len(r.Metadata) > maxEntries || len(r.AuthenticatedUsername) > 64 {
			t.Fatal("accepted an oversized reply")
		}
	})
}

func FuzzParseConfigReply(f *testing.F) {
	f.Add([]byte(`{"target":"box","docker":{"image":"alpine:3","env":{"A":"1"},"mounts":["/srv/a:/a:ro"],"memory":1,"cpus":0.5,"pids":1}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"docker":{"privileged":true}}`))
	f.Add([]byte(`{"config":{"backend":"docker","docker":{"execution":{"container":{"Image":"alpine:3","Env":["A=1"]},"host":{"Binds":["/srv/a:/a"],"Memory":1,"NanoCpus":5,"PidsLimit":3}}}},"environment":{"B":{"value":"2"}}}`))
	f.Add([]byte(`{"config":{"kubernetes":{"pod":{"spec":{"containers":[{"image":"alpine:3","resources":{"limits":{"memory":"1Mi","cpu":"10m"}}}]}}}}}`))
	a := Allow{Images: []string{"alpine:*"}, MountSources: []string{"/nonexistent-sshgate"}, MaxMemory: 1 << 30, MaxCPUs: 1, MaxPids: 100}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseConfigReply(data)
		if err != nil || r.Docker == nil {
			return
		}
		s, err := a.Apply(gate.DockerSpec{Image: "base"}, *r.Docker)
		if err != nil {
			return
		}
		if s.Image != "base" && !strings.HasPrefix(s.Image, "alpine:") {
			t.Fatalf("image %q through", s.Image)
		}
		if s.Memory > a.MaxMemory || s.NanoCPUs > 1e9 || s.Pids > a.MaxPids || s.Memory < 0 || s.NanoCPUs < 0 || s.Pids < 0 {
			t.Fatalf("limits through: %+v", s)
		}
		if len(s.Mounts) > 0 {
			t.Fatalf("mount through: %q", s.Mounts)
		}
	})
}
