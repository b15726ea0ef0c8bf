package config

import (
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
