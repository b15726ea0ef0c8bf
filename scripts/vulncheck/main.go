// Command vulncheck runs govulncheck over the sshgate module against a
// vulnerability database built offline from the golang.org/x/vulndb module
// (its data/osv reports, indexed by x/vulndb's indexdb), so that the check
// needs nothing but the Go module proxy. It fails when code the gate calls
// or imports is affected by an advisory that has a fix (the Go toolchain
// included), or by an unfixed one not listed in accepted.txt with a reason.
// Advisories in modules the gate requires but whose affected packages it
// does not import are printed and do not fail.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	root := flag("-C", "../..")
	cache := flag("-cache", "/var/cache/sshgate-vulndb")
	if err := run(root, cache); err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(1)
	}
}

func flag(name, def string) string {
	for i, a := range os.Args[1:] {
		if a == name && i+2 < len(os.Args) {
			return os.Args[i+2]
		}
	}
	return def
}

func run(root, cache string) error {
	version, err := output("go", "list", "-m", "-f", "{{.Version}}", "golang.org/x/vulndb")
	if err != nil {
		return err
	}
	// `go list -m` names the module's directory only once it is in the
	// module cache: on a fresh machine, download it first.
	if err := runCmd("go", "mod", "download", "golang.org/x/vulndb"); err != nil {
		return fmt.Errorf("download golang.org/x/vulndb: %w", err)
	}
	src, err := output("go", "list", "-m", "-f", "{{.Dir}}", "golang.org/x/vulndb")
	if err != nil {
		return err
	}
	if src == "" {
		return fmt.Errorf("golang.org/x/vulndb %s: not in the module cache after go mod download", version)
	}
	db := filepath.Join(cache, version)
	if _, err := os.Stat(filepath.Join(db, "index", "db.json")); err != nil {
		tmp := db + ".tmp"
		os.RemoveAll(tmp)
		if err := os.MkdirAll(cache, 0o755); err != nil {
			return err
		}
		fmt.Printf("vulncheck: indexing %s (golang.org/x/vulndb %s)\n", filepath.Join(src, "data", "osv"), version)
		if err := runCmd("go", "tool", "indexdb", "-vulns", filepath.Join(src, "data", "osv"), "-out", tmp); err != nil {
			return fmt.Errorf("index the database: %w", err)
		}
		if err := os.Rename(tmp, db); err != nil {
			return err
		}
	}
	gov, _ := output("go", "env", "GOVERSION")
	fmt.Printf("vulncheck: database golang.org/x/vulndb %s, toolchain %s\n", version, gov)
	cmd := exec.Command("go", "tool", "govulncheck", "-C", root, "-db", "file://"+db, "-format", "json", "./...")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return fmt.Errorf("govulncheck: %w", err)
		}
	}
	accepted, err := readAccepted("accepted.txt")
	if err != nil {
		return err
	}
	findings, err := parse(&out)
	if err != nil {
		return err
	}
	return judge(findings, accepted, os.Stdout)
}

// finding is what govulncheck found of one advisory: the deepest level it
// reached (symbol: called; package: imported; module: required only) and
// the fixed version, if any.
type finding struct {
	ID, Module, Fixed string
	Level             int // 0 module, 1 package, 2 symbol
}

var levelName = []string{"required, not imported", "imported", "called"}

func parse(r io.Reader) (map[string]*finding, error) {
	dec := json.NewDecoder(r)
	out := map[string]*finding{}
	for {
		var msg struct {
			Finding *struct {
				OSV          string `json:"osv"`
				FixedVersion string `json:"fixed_version"`
				Trace        []struct {
					Module   string `json:"module"`
					Package  string `json:"package"`
					Function string `json:"function"`
				} `json:"trace"`
			} `json:"finding"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("read govulncheck output: %w", err)
		}
		f := msg.Finding
		if f == nil || len(f.Trace) == 0 {
			continue
		}
		lvl := 0
		switch {
		case f.Trace[0].Function != "":
			lvl = 2
		case f.Trace[0].Package != "":
			lvl = 1
		}
		cur := out[f.OSV]
		if cur == nil {
			cur = &finding{ID: f.OSV, Module: f.Trace[0].Module, Fixed: f.FixedVersion}
			out[f.OSV] = cur
		}
		cur.Level = max(cur.Level, lvl)
	}
}

func readAccepted(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, why, _ := strings.Cut(line, " ")
		if strings.TrimSpace(why) == "" {
			return nil, fmt.Errorf("%s: %s has no reason", path, id)
		}
		out[id] = why
	}
	return out, sc.Err()
}

// judge prints every finding and returns an error naming those that fail.
func judge(fs map[string]*finding, accepted map[string]string, w io.Writer) error {
	ids := make([]string, 0, len(fs))
	for id := range fs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var bad []string
	for _, id := range ids {
		f := fs[id]
		verdict := "ok (not imported)"
		switch {
		case f.Level == 0:
		case f.Fixed != "":
			verdict = "FAIL: fixed in " + f.Fixed
			bad = append(bad, id)
		case accepted[id] != "":
			verdict = "accepted: " + accepted[id]
		default:
			verdict = "FAIL: no fix yet and not in accepted.txt"
			bad = append(bad, id)
		}
		fmt.Fprintf(w, "  %s %s (%s): %s\n", id, f.Module, levelName[f.Level], verdict)
	}
	for id := range accepted {
		if f := fs[id]; f != nil && f.Fixed != "" {
			fmt.Fprintf(w, "  %s now has a fix (%s): upgrade and remove it from accepted.txt\n", id, f.Fixed)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d advisories affect the gate: %s", len(bad), strings.Join(bad, ", "))
	}
	fmt.Fprintf(w, "vulncheck: %d advisories reported, none that the gate is exposed to and could fix\n", len(ids))
	return nil
}

func output(name string, args ...string) (string, error) {
	b, err := exec.Command(name, args...).Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func runCmd(name string, args ...string) error {
	c := exec.Command(name, args...)
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	return c.Run()
}
