package rules

import (
	"slices"
	"strings"
	"testing"
)

func TestParseRules(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		found bool
		want  []string // full paths, "X/..." for trees, "any" for any project package
		err   string
	}{
		{name: "none", doc: "Package x does y.\n"},
		{name: "prose mention", doc: "It says Must not import: only at the start of a line.\n"},
		{name: "one line", doc: "Package x.\n\nMust not import: store relay target/...\n", found: true,
			want: []string{module + "/internal/store", module + "/internal/relay", module + "/internal/target/..."}},
		{name: "cmd", doc: "Must not import: cmd/sshgate e2e/harness\n", found: true,
			want: []string{module + "/cmd/sshgate", module + "/e2e/harness"}},
		{name: "external", doc: "Must not import: github.com/docker/... k8s.io/client-go\n", found: true,
			want: []string{"github.com/docker/...", "k8s.io/client-go"}},
		{name: "any", doc: "Must not import: any project package\n", found: true, want: []string{"any"}},
		{name: "lines add up", doc: "Must not import: store\nMust not import: github.com/moby/...\n", found: true,
			want: []string{module + "/internal/store", "github.com/moby/..."}},
		{name: "indented by the comment", doc: "  Must not import:   store  \n", found: true,
			want: []string{module + "/internal/store"}},
		{name: "empty", doc: "Must not import:\n", found: true, err: "names nothing"},
		{name: "internal prefix", doc: "Must not import: internal/store\n", found: true, err: "without internal/"},
		{name: "module prefix", doc: "Must not import: " + module + "/internal/store\n", found: true, err: "relative"},
		{name: "inner wildcard", doc: "Must not import: store/.../x\n", found: true, err: "wildcard"},
		{name: "bare wildcard", doc: "Must not import: ...\n", found: true, err: "wildcard"},
		{name: "unclean", doc: "Must not import: ../store\n", found: true, err: "clean"},
		{name: "trailing slash", doc: "Must not import: store/\n", found: true, err: "clean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pats, found, err := parseRules(tt.doc)
			if found != tt.found {
				t.Errorf("found = %v, want %v", found, tt.found)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range pats {
				switch {
				case p.any:
					got = append(got, "any")
				case p.tree:
					got = append(got, p.path+"/...")
				default:
					got = append(got, p.path)
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("patterns = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	m := module + "/internal/"
	tests := []struct {
		word string
		path string
		want bool
	}{
		{"store", m + "store", true},
		{"store", m + "store/sqlite", false},
		{"store/...", m + "store", true},
		{"store/...", m + "store/sqlite", true},
		{"store/...", m + "storetest", false},
		{"target/...", m + "target/docker", true},
		{"auth", m + "auth/totp", false},
		{"cmd/sshgate", module + "/cmd/sshgate", true},
		{"cmd/sshgate", module + "/cmd/sshgate-agent", false},
		{"github.com/docker/...", "github.com/docker/docker/client", true},
		{"github.com/docker/...", "github.com/dockerx/y", false},
		{"any project package", m + "gate", true},
		{"any project package", module + "/cmd/sshgate", true},
		{"any project package", "github.com/sshgate/sshgatex", false},
		{"any project package", "golang.org/x/crypto/ssh", false},
	}
	for _, tt := range tests {
		pats, _, err := parseRules(rulePrefix + " " + tt.word)
		if err != nil || len(pats) != 1 {
			t.Fatalf("%q: %v %v", tt.word, pats, err)
		}
		if got := pats[0].match(tt.path); got != tt.want {
			t.Errorf("%q matches %s = %v, want %v", tt.word, tt.path, got, tt.want)
		}
	}
}

// TestCheck runs the check over a made-up module, so that each kind of broken
// rule is seen to fail.
func TestCheck(t *testing.T) {
	m := module + "/internal/"
	graph := func(docs map[string]string, imports map[string][]string) map[string]*pkg {
		pkgs := map[string]*pkg{}
		for path, doc := range docs {
			pkgs[path] = &pkg{ImportPath: path, GoFiles: []string{"x.go"}, Module: &struct{ Path string }{module}, doc: doc}
		}
		pkgs["golang.org/x/crypto/ssh"] = &pkg{ImportPath: "golang.org/x/crypto/ssh", DepOnly: true}
		for path, imps := range imports {
			pkgs[path].Imports = imps
		}
		// Deps: the transitive closure of Imports, as go list prints it.
		for path, p := range pkgs {
			seen := map[string]bool{}
			var walk func(string)
			walk = func(q string) {
				for _, d := range pkgs[q].Imports {
					if !seen[d] {
						seen[d] = true
						walk(d)
					}
				}
			}
			walk(path)
			for d := range seen {
				p.Deps = append(p.Deps, d)
			}
			slices.Sort(p.Deps)
		}
		return pkgs
	}
	base := map[string]string{
		m + "gate":          "Must not import: any project package",
		m + "store":         "Must not import: relay",
		m + "store/sqlite":  "Must not import: relay",
		m + "relay":         "Must not import: store/... policy",
		m + "policy":        "Must not import: store/...",
		m + "broker":        "Must not import: auth",
		m + "auth":          "Must not import: broker",
		module + "/cmd/x":   "Must not import: github.com/docker/...",
		module + "/e2e/foo": "",
	}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	clean := map[string][]string{
		m + "store":        {m + "gate"},
		m + "store/sqlite": {m + "store", "golang.org/x/crypto/ssh"},
		m + "relay":        {"golang.org/x/crypto/ssh"},
		m + "policy":       {m + "gate"},
		m + "broker":       {m + "relay", m + "policy", m + "store"},
	}
	tests := []struct {
		name    string
		docs    map[string]string
		imports map[string][]string
		pending map[string]bool
		want    []string // one substring per expected problem
	}{
		{name: "clean", docs: base, imports: clean},
		{name: "direct import", docs: base, imports: with2(clean, m+"relay", m+"store"),
			want: []string{`internal/relay: must not import "store/...", but imports ` + m + `store (internal/relay -> internal/store)`}},
		{name: "through another package", docs: base, imports: with2(clean, m+"policy", m+"store/sqlite"),
			want: []string{
				`internal/policy: must not import "store/...", but imports ` + m + `store (internal/policy -> internal/store/sqlite -> internal/store)`,
				`internal/policy: must not import "store/...", but imports ` + m + `store/sqlite (internal/policy -> internal/store/sqlite)`,
			}},
		{name: "leaf imports the project", docs: base, imports: with2(clean, m+"gate", m+"policy"),
			want: []string{`internal/gate: must not import "any project package", but imports ` + m + `policy (internal/gate -> internal/policy)`}},
		{name: "no rule", docs: with(map[string]string{m + "live": "Package live keeps live sessions."}), imports: clean,
			want: []string{`internal/live: the package doc comment has no "Must not import:" line`}},
		{name: "no rule, pending", docs: with(map[string]string{m + "live": "Package live."}), imports: clean,
			pending: map[string]bool{m + "live": true}},
		{name: "pending but stated", docs: base, imports: clean, pending: map[string]bool{m + "policy": true},
			want: []string{`internal/policy: states its rule now: remove it from pendingRules`}},
		{name: "pending stated and broken", docs: base, imports: with2(clean, m+"policy", m+"store"),
			pending: map[string]bool{m + "policy": true},
			want: []string{
				`internal/policy: states its rule now`,
				`internal/policy: must not import "store/...", but imports ` + m + `store (`,
			}},
		{name: "unknown package", docs: with(map[string]string{m + "policy": "Must not import: stor/..."}), imports: clean,
			want: []string{`internal/policy: rule "stor/..." names no package of the module`}},
		{name: "bad line", docs: with(map[string]string{m + "policy": "Must not import: internal/store"}), imports: clean,
			want: []string{`internal/policy: bad "Must not import:" line`}},
		{name: "external", docs: with(map[string]string{module + "/cmd/x": "Must not import: golang.org/x/crypto/..."}),
			imports: with2(clean, module+"/cmd/x", m+"store/sqlite"),
			want:    []string{`cmd/x: must not import "golang.org/x/crypto/...", but imports golang.org/x/crypto/ssh (cmd/x -> internal/store/sqlite -> golang.org/x/crypto/ssh)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check(graph(tt.docs, tt.imports), tt.pending)
			if len(got) != len(tt.want) {
				t.Fatalf("problems:\n%s\nwant %d", strings.Join(got, "\n"), len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// with2 returns imports with from also importing to.
func with2(imports map[string][]string, from, to string) map[string][]string {
	out := map[string][]string{}
	for k, v := range imports {
		out[k] = append([]string(nil), v...)
	}
	out[from] = append(out[from], to)
	return out
}
