package main

import (
	"io"
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	acc := map[string]string{"GO-1": "daemon only"}
	tests := []struct {
		name string
		f    finding
		fail bool
	}{
		{"called with a fix", finding{ID: "GO-9", Module: "stdlib", Fixed: "v1.26.10", Level: 2}, true},
		{"imported with a fix", finding{ID: "GO-9", Module: "golang.org/x/crypto", Fixed: "v0.60.0", Level: 1}, true},
		{"required only", finding{ID: "GO-9", Module: "golang.org/x/crypto", Fixed: "v0.60.0", Level: 0}, false},
		{"unfixed, accepted", finding{ID: "GO-1", Module: "github.com/docker/docker", Level: 2}, false},
		{"unfixed, not accepted", finding{ID: "GO-2", Module: "github.com/docker/docker", Level: 2}, true},
		{"accepted but now fixed", finding{ID: "GO-1", Module: "github.com/docker/docker", Fixed: "v29.0.0", Level: 2}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			err := judge(map[string]*finding{f.ID: &f}, acc, io.Discard)
			if (err != nil) != tt.fail {
				t.Errorf("err %v, want failure %v", err, tt.fail)
			}
		})
	}
}

func TestParse(t *testing.T) {
	in := `{"config":{}}
{"osv":{"id":"GO-1"}}
{"finding":{"osv":"GO-1","fixed_version":"v1.2.3","trace":[{"module":"m"}]}}
{"finding":{"osv":"GO-1","fixed_version":"v1.2.3","trace":[{"module":"m","package":"m/p","function":"F"}]}}
{"finding":{"osv":"GO-2","trace":[{"module":"n","package":"n/p"}]}}
`
	fs, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if f := fs["GO-1"]; f == nil || f.Level != 2 || f.Fixed != "v1.2.3" || f.Module != "m" {
		t.Errorf("GO-1 %+v", f)
	}
	if f := fs["GO-2"]; f == nil || f.Level != 1 {
		t.Errorf("GO-2 %+v", f)
	}
}
