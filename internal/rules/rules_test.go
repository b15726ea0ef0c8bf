package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sshgate/sshgate"

// pendingRules are packages whose doc comments do not state their rule yet:
// the test skips only these, and fails once one of them states a rule. Keep
// it empty.
var pendingRules = map[string]bool{}

const (
	rulePrefix = "Must not import:"
	anyProject = "any project package"
)

// pattern is one forbidden import path, full, as the rule line meant it.
type pattern struct {
	word string // as written in the rule line
	path string // full import path, without the /... suffix
	tree bool   // the word ended in /...: path and everything under it
	any  bool   // any project package
}

func (p pattern) match(importPath string) bool {
	switch {
	case p.any:
		return importPath == module || strings.HasPrefix(importPath, module+"/")
	case p.tree:
		return importPath == p.path || strings.HasPrefix(importPath, p.path+"/")
	default:
		return importPath == p.path
	}
}

// project tells whether the pattern names packages of the module (and so must
// name at least one that exists).
func (p pattern) project() bool { return !p.any && strings.HasPrefix(p.path, module+"/") }

// parseRules reads the rule lines of a package doc comment (its text, without
// the comment markers). It reports found=false when there is no rule line.
func parseRules(doc string) (pats []pattern, found bool, err error) {
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, rulePrefix)
		if !ok {
			continue
		}
		found = true
		rest = strings.TrimSpace(rest)
		if rest == "" {
			return nil, true, fmt.Errorf("%q names nothing", line)
		}
		if rest == anyProject {
			pats = append(pats, pattern{word: anyProject, any: true})
			continue
		}
		for _, w := range strings.Fields(rest) {
			p, err := parseWord(w)
			if err != nil {
				return nil, true, err
			}
			pats = append(pats, p)
		}
	}
	return pats, found, nil
}

func parseWord(w string) (pattern, error) {
	p := pattern{word: w}
	path := w
	if strings.HasSuffix(path, "/...") {
		p.tree = true
		path = strings.TrimSuffix(path, "/...")
	}
	switch {
	case path == "" || strings.Contains(path, "..."):
		return p, fmt.Errorf("%q: only a trailing /... is a wildcard", w)
	case strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") || strings.Contains(path, "//") ||
		path == "." || strings.HasPrefix(path, "./") || strings.Contains(path, "/./") || strings.Contains(path, ".."):
		return p, fmt.Errorf("%q is not a clean import path", w)
	case strings.HasPrefix(path, "internal/") || path == "internal":
		return p, fmt.Errorf("%q: write paths under internal/ without internal/ (%q)", w, strings.TrimPrefix(w, "internal/"))
	case strings.HasPrefix(path, module):
		return p, fmt.Errorf("%q: write paths relative to the module's internal/ directory", w)
	case strings.Contains(strings.SplitN(path, "/", 2)[0], "."):
		p.path = path // a package outside the project
	case path == "cmd" || strings.HasPrefix(path, "cmd/") || path == "e2e" || strings.HasPrefix(path, "e2e/"):
		p.path = module + "/" + path
	default:
		p.path = module + "/internal/" + path
	}
	return p, nil
}

// pkg is what the check needs of one package from go list.
type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	CgoFiles   []string
	Imports    []string
	Deps       []string
	DepOnly    bool
	Module     *struct{ Path string }

	doc string // the package doc comments of its files, read by readDocs
}

// needsRule tells whether a package must state a rule: every package of the
// module under internal/ or cmd/ that has non-test Go files.
func needsRule(p *pkg) bool {
	rel, ok := strings.CutPrefix(p.ImportPath, module+"/")
	if !ok || len(p.GoFiles)+len(p.CgoFiles) == 0 {
		return false
	}
	return strings.HasPrefix(rel, "internal/") || strings.HasPrefix(rel, "cmd/")
}

// check returns one line per broken rule. pkgs holds every package go list
// printed (the module's and all their dependencies), by import path.
func check(pkgs map[string]*pkg, pending map[string]bool) []string {
	var own []string
	for path, p := range pkgs {
		if !p.DepOnly && p.Module != nil && p.Module.Path == module {
			own = append(own, path)
		}
	}
	slices.Sort(own)

	var problems []string
	for _, path := range own {
		p := pkgs[path]
		pats, found, err := parseRules(p.doc)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: bad %q line: %v", path, rulePrefix, err))
			continue
		case pending[path] && found:
			problems = append(problems, fmt.Sprintf("%s: states its rule now: remove it from pendingRules", path))
		case pending[path]:
			continue
		case !found && needsRule(p):
			problems = append(problems, fmt.Sprintf("%s: the package doc comment has no %q line", path, rulePrefix))
			continue
		}
		for _, pat := range pats {
			if pat.project() && !slices.ContainsFunc(own, pat.match) {
				problems = append(problems, fmt.Sprintf("%s: rule %q names no package of the module", path, pat.word))
			}
		}
		for _, dep := range p.Deps {
			if dep == path {
				continue
			}
			for _, pat := range pats {
				if pat.match(dep) {
					problems = append(problems, fmt.Sprintf("%s: must not import %q, but imports %s (%s)",
						path, pat.word, dep, strings.Join(chain(pkgs, path, dep), " -> ")))
				}
			}
		}
	}
	return problems
}

// chain is the shortest import chain from one package to another it depends on.
func chain(pkgs map[string]*pkg, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var c []string
			for ; cur != ""; cur = prev[cur] {
				c = append(c, strings.TrimPrefix(cur, module+"/"))
			}
			slices.Reverse(c)
			return c
		}
		p := pkgs[cur]
		if p == nil {
			continue
		}
		for _, next := range p.Imports {
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return []string{strings.TrimPrefix(from, module+"/"), "...", strings.TrimPrefix(to, module+"/")}
}

// readDocs fills in the doc comments of the module's own packages from their
// non-test Go files.
func readDocs(p *pkg) error {
	fset := token.NewFileSet()
	var docs []string
	for _, name := range append(slices.Clone(p.GoFiles), p.CgoFiles...) {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		if f.Doc != nil {
			docs = append(docs, f.Doc.Text())
		}
	}
	p.doc = strings.Join(docs, "\n")
	return nil
}

func goList(t *testing.T) map[string]*pkg {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	watchTree(t, root)
	cmd := exec.Command("go", "list", "-deps", "-json", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps -json ./...: %v: %s", err, stderr.Bytes())
	}
	pkgs := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(pkg)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Module != nil && p.Module.Path == module && !p.DepOnly {
			if err := readDocs(p); err != nil {
				t.Fatalf("%s: %v", p.ImportPath, err)
			}
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

// watchTree reads every directory of the module, go.mod and go.sum, so that
// go test's cache, which knows only the files and directories a test opens
// (not what go list reads), runs the test again after any of them changes.
func watchTree(t *testing.T, root string) {
	t.Helper()
	for _, name := range []string{"go.mod", "go.sum"} {
		if _, err := os.ReadFile(filepath.Join(root, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		_, err = os.ReadDir(path)
		return err
	})
	if err != nil {
		t.Fatalf("read the module tree: %v", err)
	}
}

// TestImportRules holds every package of the module to the rule its doc
// comment states.
func TestImportRules(t *testing.T) {
	pkgs := goList(t)
	n := 0
	for path, p := range pkgs {
		if !p.DepOnly && p.Module != nil && p.Module.Path == module {
			n++
			if pendingRules[path] {
				t.Logf("%s: rule pending", path)
			}
		}
	}
	if n < 20 {
		t.Fatalf("go list found %d packages of the module; expected the whole module", n)
	}
	for _, problem := range check(pkgs, pendingRules) {
		t.Error(problem)
	}
}
