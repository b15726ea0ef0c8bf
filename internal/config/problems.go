package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a configuration, where the operator wrote
// it: the file, the line (0 when the value is not in the file: a default, or
// a flag that overrides the file) and the YAML path ("log.level").
type Problem struct {
	File string
	Line int
	Path string
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	} else if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in a configuration, in file order. As an
// error it is one problem per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sortProblems orders by line; problems without a line come last.
func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		li, lj := ps[i].Line, ps[j].Line
		if (li == 0) != (lj == 0) {
			return lj == 0
		}
		return li < lj
	})
}

// source remembers where each YAML path was written.
type source struct {
	file  string
	lines map[string]int // "log.level" -> line of its key
}

// lineOf is the line of path, or of its nearest parent written in the file.
func (s *source) lineOf(path string) int {
	if s == nil {
		return 0
	}
	for p := path; p != ""; {
		if l, ok := s.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// forgetChanged drops the lines of paths whose value a flag replaced: the
// file no longer says what is checked there.
func (s *source) forgetChanged(before, after Config) {
	if s == nil {
		return
	}
	for p := range s.lines {
		b, okb := pathValue(reflect.ValueOf(before), p)
		a, oka := pathValue(reflect.ValueOf(after), p)
		if okb && oka && !reflect.DeepEqual(b.Interface(), a.Interface()) {
			delete(s.lines, p)
		}
	}
}

// pathValue is the field at a dotted YAML path.
func pathValue(v reflect.Value, path string) (reflect.Value, bool) {
	for _, name := range strings.Split(path, ".") {
		if v.Kind() != reflect.Struct {
			return v, false
		}
		fields := map[string]reflect.Value{}
		var names []string
		collectFields(v, fields, &names)
		f, ok := fields[name]
		if !ok {
			return v, false
		}
		v = f
	}
	return v, true
}

// Check loads file over the defaults, lets apply override what flags set,
// validates, and returns every problem (parse and validation alike) with
// its line. An empty file checks the defaults.
func Check(file string, apply func(*Config)) (Config, error) {
	c, src, probs := load(file)
	if probs == nil || !probs.fatal() {
		if apply != nil {
			before := c
			apply(&c)
			src.forgetChanged(before, c)
		}
		probs = append(probs, c.problems(src)...)
		probs = append(probs, c.fileProblems(src)...)
	}
	if len(probs) == 0 {
		return c, nil
	}
	probs.sort()
	return c, probs
}

// fatal reports a problem that leaves nothing to validate: the file cannot
// be read or is not YAML.
func (ps Problems) fatal() bool {
	for _, p := range ps {
		if p.Path == "" {
			return true
		}
	}
	return false
}

// problems is Validate as Problems, each with the line of its path.
func (c Config) problems(src *source) Problems {
	var out Problems
	var walk func(err error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		msg := err.Error()
		path, rest, ok := strings.Cut(msg, ": ")
		if !ok || strings.ContainsAny(path, " \"") {
			path, rest = "", msg
		}
		p := Problem{Path: path, Msg: rest, Line: src.lineOf(path)}
		if src != nil {
			p.File = src.file
		}
		out = append(out, p)
	}
	walk(c.Validate())
	return out
}

// load reads file into the defaults, collecting every problem of the YAML
// itself: syntax, unknown or repeated keys, values of the wrong type.
func load(file string) (Config, *source, Problems) {
	c := Defaults()
	if file == "" {
		return c, nil, nil
	}
	src := &source{file: file, lines: map[string]int{}}
	data, err := os.ReadFile(file)
	if err != nil {
		msg := err.Error()
		var pe *os.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return c, src, Problems{{File: file, Msg: "cannot read: " + msg}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return c, src, Problems{syntaxProblem(file, err)}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 { // empty file
		return c, src, nil
	}
	d := &decoder{src: src}
	d.value(doc.Content[0], reflect.ValueOf(&c).Elem(), "")
	return c, src, d.probs
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

func syntaxProblem(file string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := Problem{File: file, Msg: "not valid YAML: " + msg}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = "not valid YAML: " + err.Error()[len(m[0]):]
	}
	return p
}

type decoder struct {
	src   *source
	probs Problems
}

func (d *decoder) bad(n *yaml.Node, path, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.src.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// value decodes n into v, recursing through structs so that every key is
// checked against the schema and every path's line is known.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	t := v.Type()
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshalerType) {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return // "key:" with nothing: keep the default
		}
		fresh := reflect.New(t)
		fresh.Elem().Set(v)
		if err := n.Decode(fresh.Interface()); err != nil {
			d.bad(n, path, "%s", typeMessage(err, n, t))
			return
		}
		v.Set(fresh.Elem())
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.bad(n, path, "want a mapping of keys (%s), got %s", strings.Join(fieldNames(t), ", "), describe(n))
		return
	}
	fields := map[string]reflect.Value{}
	var names []string
	collectFields(v, fields, &names)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		p := key
		if path != "" {
			p = path + "." + key
		}
		if first, ok := seen[key]; ok {
			d.bad(k, p, "given twice (first at line %d)", first)
			continue
		}
		seen[key] = k.Line
		f, ok := fields[key]
		if !ok {
			if s := closest(key, names); s != "" {
				d.bad(k, p, "unknown key (did you mean %s?)", s)
			} else {
				d.bad(k, p, "unknown key (known here: %s)", strings.Join(names, ", "))
			}
			continue
		}
		d.src.lines[p] = k.Line
		d.value(val, f, p)
	}
}

// collectFields maps the YAML names of v's fields (inline structs
// flattened) to the fields themselves.
func collectFields(v reflect.Value, out map[string]reflect.Value, names *[]string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") && sf.Type.Kind() == reflect.Struct {
			collectFields(v.Field(i), out, names)
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out[name] = v.Field(i)
		*names = append(*names, name)
	}
}

func fieldNames(t reflect.Type) []string {
	var names []string
	collectFields(reflect.New(t).Elem(), map[string]reflect.Value{}, &names)
	return names
}

// typeMessage says what a value should have been, in YAML's terms rather
// than Go's.
func typeMessage(err error, n *yaml.Node, t reflect.Type) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return yamlLine.ReplaceAllString(err.Error(), "") // our own UnmarshalYAML messages
	}
	return fmt.Sprintf("want %s, got %s", kindWord(t), describe(n))
}

func kindWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(kindWord(t.Elem()), "a "), "an ") + "s"
	case reflect.Map:
		return "a mapping"
	}
	return "a " + t.Kind().String()
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	}
	return "something else"
}

// closest is the known name nearest to key, if it is near enough to be a
// typo.
func closest(key string, names []string) string {
	best, bestD := "", 0
	for _, n := range names {
		d := editDistance(strings.ToLower(key), n)
		if best == "" || d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" || bestD > max(2, len(key)/3) || bestD >= len(key) {
		return ""
	}
	return best
}

// editDistance is the Damerau (optimal string alignment) distance: an
// adjacent swap counts once, as in "levle".
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// fileProblems are the files the configuration names that cannot be read
// now: serve would stop on each of them.
func (c Config) fileProblems(src *source) Problems {
	var out Problems
	check := func(path, name string) {
		if name == "" {
			return
		}
		f, err := os.Open(name)
		if err == nil {
			f.Close()
			return
		}
		msg := err.Error()
		var pe *os.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		p := Problem{Path: path, Line: src.lineOf(path), Msg: fmt.Sprintf("%s: cannot read: %s", name, msg)}
		if src != nil {
			p.File = src.file
		}
		out = append(out, p)
	}
	for _, f := range c.CA.TrustedUserCAKeys {
		check("ca.trusted_user_ca_keys", f)
	}
	for _, f := range c.Keys.Files() {
		check(f[0], f[1]) // a configured key is never generated: missing is a problem
	}
	if c.Audit.Webhook.URL != "" {
		check("audit.webhook.token_file", c.Audit.Webhook.TokenFile)
	}
	if c.Auth.OIDC.Enabled() {
		check("auth.oidc.client_secret_file", c.Auth.OIDC.ClientSecretFile)
		check("auth.oidc.ca_file", c.Auth.OIDC.CAFile)
	}
	for _, w := range []struct {
		key string
		c   WebhookClient
	}{{"auth.webhook.tls", c.Auth.Webhook.WebhookClient}, {"config_webhook.tls", c.ConfigWebhook.WebhookClient}} {
		if w.c.URL == "" {
			continue // off: its files are not read
		}
		w := struct {
			key string
			tls WebhookTLS
		}{w.key, w.c.TLS}
		check(w.key+".ca_file", w.tls.CAFile)
		check(w.key+".cert_file", w.tls.CertFile)
		check(w.key+".key_file", w.tls.KeyFile)
	}
	return out
}
