package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMenuValidate(t *testing.T) {
	tests := []struct {
		m    Menu
		want int
	}{
		{Menu{AfterSession: "menu"}, 0},
		{Menu{AfterSession: "disconnect", ProbeTimeout: Duration(time.Second)}, 0},
		{Menu{AfterSession: ""}, 1},
		{Menu{AfterSession: "exit"}, 1},
		{Menu{AfterSession: "menu", ProbeTimeout: Duration(-1)}, 1},
		{Menu{AfterSession: "x", ProbeTimeout: Duration(time.Hour)}, 2},
	}
	for _, tt := range tests {
		if got := tt.m.validate(); len(got) != tt.want {
			t.Errorf("validate(%+v) = %v, want %d errors", tt.m, got, tt.want)
		}
	}
}

func TestTextFiles(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "motd")
	os.WriteFile(ok, []byte("Welcome\n"), 0o644)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, MaxTextFile+1), 0o644)
	for _, tt := range []struct {
		path, want string
	}{
		{"", ""},
		{ok, ""},
		{filepath.Join(dir, "nosuch"), "no such file"},
		{dir, "is not a regular file"},
		{big, "more than 8192"},
	} {
		c := Defaults()
		c.SSH.Banner, c.Menu.MOTD = tt.path, tt.path
		err := c.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.path, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "ssh.banner: ") || !strings.Contains(err.Error(), "menu.motd: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want ssh.banner and menu.motd problems with %q", tt.path, err, tt.want)
		}
	}
}
