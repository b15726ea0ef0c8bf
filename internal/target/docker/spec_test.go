package docker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

func TestParseMount(t *testing.T) {
	deny := append(append([]string{}, DefaultDenyMounts...), "/var/lib/sshgate")
	tests := []struct {
		in      string
		src     string
		dst     string
		ro      bool
		wantErr string
	}{
		{in: "/srv/data:/data", src: "/srv/data", dst: "/data"},
		{in: "/srv/data:/data:ro", src: "/srv/data", dst: "/data", ro: true},
		{in: "/srv/data/../x:/data/:rw", src: "/srv/x", dst: "/data"},
		{in: "srv:/data", wantErr: "absolute"},
		{in: "./srv:/data", wantErr: "absolute"},
		{in: "/srv:data", wantErr: "absolute"},
		{in: "/srv", wantErr: "SRC:DST"},
		{in: "/srv:/a:ro:x", wantErr: "SRC:DST"},
		{in: "/srv:/a:rx", wantErr: "unknown option"},
		{in: "/:/host", wantErr: "not allowed"},
		{in: "/proc:/p", wantErr: "not allowed"},
		{in: "/proc/1:/p", wantErr: "not allowed"},
		{in: "/sys/fs:/p", wantErr: "not allowed"},
		{in: "/dev:/dev", wantErr: "not allowed"},
		{in: "/etc/passwd:/x", wantErr: "not allowed"},
		{in: "/var/run/docker.sock:/var/run/docker.sock", wantErr: "not allowed"},
		{in: "/run/docker.sock:/d.sock", wantErr: "not allowed"},
		{in: "/var/run:/r", wantErr: "not allowed"},
		{in: "/run:/r", wantErr: "not allowed"},
		{in: "/var:/v", wantErr: "not allowed"},
		{in: "/var/lib/sshgate/containers/x:/v", wantErr: "not allowed"},
		{in: "/var/lib:/v", wantErr: "not allowed"},
		{in: "/srv/../proc:/p", wantErr: "not allowed"},
		{in: "/procx:/p", src: "/procx", dst: "/p"},
		{in: "/srv:/", wantErr: "reserved"},
		{in: "/srv:/run/sshgate", wantErr: "reserved"},
		{in: "/srv:/run/sshgate/x", wantErr: "reserved"},
		{in: "/srv:/run/sshgate-agent", wantErr: "reserved"},
		{in: "/srv,a:/x", wantErr: "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := ParseMount(tt.in, deny, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseMount(%q) = %+v, %v; want error containing %q", tt.in, m, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMount(%q): %v", tt.in, err)
			}
			if m.Source != tt.src || m.Target != tt.dst || m.ReadOnly != tt.ro || m.Type != "bind" {
				t.Fatalf("ParseMount(%q) = %+v; want %s -> %s ro=%v", tt.in, m, tt.src, tt.dst, tt.ro)
			}
		})
	}
}

func TestParseMountSymlink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "l")
	if err := os.Symlink("/etc", link); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseMount(link+":/x", DefaultDenyMounts, filepath.EvalSymlinks); err == nil || !strings.Contains(err.Error(), "resolves to /etc") {
		t.Fatalf("symlink to /etc accepted: %v", err)
	}
	if _, err := ParseMount(filepath.Join(dir, "missing")+":/x", DefaultDenyMounts, filepath.EvalSymlinks); err == nil {
		t.Fatal("missing source accepted")
	}
	m, err := ParseMount(dir+":/x", DefaultDenyMounts, filepath.EvalSymlinks)
	if err != nil {
		t.Fatal(err)
	}
	if m.Source == "" || !filepath.IsAbs(m.Source) {
		t.Fatalf("source %q", m.Source)
	}
}

func FuzzParseMount(f *testing.F) {
	for _, s := range []string{"/srv:/data", "/srv:/data:ro", "/:/x", "/var/../etc:/x", "a:b:c:d", "/srv:/run/sshgate"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMount(s, DefaultDenyMounts, nil)
		if err != nil {
			return
		}
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Target) || m.Source != filepath.Clean(m.Source) {
			t.Fatalf("accepted %q as %+v", s, m)
		}
		for _, d := range DefaultDenyMounts {
			if within(m.Source, d) || within(d, m.Source) {
				t.Fatalf("accepted %q whose source %s meets %s", s, m.Source, d)
			}
		}
		if m.Target == "/" || within(m.Target, DirMount) || within(m.Target, AgentMount) {
			t.Fatalf("accepted reserved target in %q", s)
		}
	})
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{"web-1": "sshgate-web-1-abc", "a b/c": "sshgate-a_b_c-abc", "": "sshgate-target-abc"} {
		if got := ContainerName(in, "abc"); got != want {
			t.Errorf("ContainerName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := ContainerName(strings.Repeat("x", 100), "abc"); len(got) > 60 {
		t.Errorf("long name %q", got)
	}
	for in, want := range map[string]string{"Web_1": "web-1", "--a--": "a", "": ""} {
		if got := lifecycle.Hostname(in); got != want {
			t.Errorf("hostname(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStripMux(t *testing.T) {
	in := append([]byte{2, 0, 0, 0, 0, 0, 0, 3}, "abc"...)
	in = append(in, 1, 0, 0, 0, 0, 0, 0, 2)
	in = append(in, "de"...)
	if got := stripMux(in); got != "abcde" {
		t.Fatalf("stripMux = %q", got)
	}
}
