// Package menu is the account menu's model: the bubbletea program a PTY user
// with no target navigates (environment groups -> environments ->
// containers) to choose a target. It is pure: it reads no store, dials
// nothing and owns no terminal; the broker feeds it items and window sizes,
// drives it over the SSH channel and connects to what it chose.
//
// Must not import: store/... broker sshd/... relay target/... auth/... policy app
package menu

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
)

// Item is one container (target) the user may reach.
type Item struct {
	ID      int64
	Name    string
	Aliases []string
	Env     string
	Group   string // "" when the env has none
	Addr    string // internal address: host:port, or "docker"
	State   string // "running", "stopped", "starts on connect", "upstream"
	Primary bool
}

// Options are what the menu shows besides the items.
type Options struct {
	User       string
	UID        int64  // 0: no NODEID-UID line
	Host, Port string // where users reach the gate, for the copyable strings
	Width      int
	Height     int
	Note       string   // shown once in the status line (why the last connect failed)
	At         string   // open on this target's row (the one just left), if it is listed
	MOTD       []string // the message of the day, shown under the title (at most a third of the height)
	// Refresh re-reads the items (the r key). It runs in a tea.Cmd.
	Refresh func() ([]Item, error)
	// Chosen is called from Update the moment a target is chosen or the
	// user quits, before the program stops: the broker stops feeding input
	// there, so that keys typed next reach the target.
	Chosen func()
}

// UngroupedLabel names the group of environments that have none.
const UngroupedLabel = "(no group)"

const (
	levelGroups = iota
	levelEnvs
	levelTargets
)

// Model is the bubbletea model.
type Model struct {
	o      Options
	items  []Item
	level  int
	start  int // the level the menu opened at (levels with one entry are skipped)
	group  string
	env    string
	cursor int
	filter string
	number string
	status string // one line: refresh errors and the like
	choice string
	done   bool
	sel    lipgloss.Style
}

// New returns a menu over items. r renders styles for the user's terminal.
func New(items []Item, o Options, r *lipgloss.Renderer) *Model {
	if o.Width <= 0 {
		o.Width = 80
	}
	if o.Height <= 0 {
		o.Height = 24
	}
	m := &Model{o: o, sel: r.NewStyle().Reverse(true), status: o.Note}
	m.setItems(items)
	m.level = m.start
	for _, it := range m.items {
		if it.Name == o.At {
			m.level, m.group, m.env = levelTargets, it.Group, it.Env
			for i, r := range m.rows() {
				if r.key == it.Name {
					m.cursor = i
				}
			}
		}
	}
	return m
}

// Choice is the chosen target's name; ok is false when the user quit.
func (m *Model) Choice() (string, bool) { return m.choice, m.choice != "" }

// refreshedMsg carries re-read items.
type refreshedMsg struct {
	items []Item
	err   error
}

func (m *Model) setItems(items []Item) {
	m.items = append([]Item(nil), items...)
	sort.Slice(m.items, func(i, j int) bool { return m.items[i].ID < m.items[j].ID })
	m.start = levelTargets
	groups := m.groups()
	switch {
	case len(groups) > 1:
		m.start = levelGroups
	case len(groups) == 1 && len(m.envs(groups[0])) > 1:
		m.start, m.group = levelEnvs, groups[0]
	case len(groups) == 1:
		m.group = groups[0]
		m.env = m.envs(groups[0])[0]
	}
}

// Init tells the program (and its renderer, which repaints by line and
// must know the width to erase what a shorter line leaves) the pty's size.
func (m *Model) Init() tea.Cmd {
	w, h := m.o.Width, m.o.Height
	// Clear first: what the last session left on the terminal (a terminal
	// without an alternate screen, or one that keeps it) must not show
	// above the menu when it comes back.
	return tea.Sequence(tea.ClearScreen, func() tea.Msg { return tea.WindowSizeMsg{Width: w, Height: h} })
}

func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.o.Width, m.o.Height = msg.Width, msg.Height
	case refreshedMsg:
		if msg.err != nil {
			m.status = "could not refresh the list"
			return m, nil
		}
		m.setItems(msg.items)
		if m.level < m.start {
			m.level = m.start
		}
		m.status = "refreshed"
		m.clamp()
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

func (m *Model) finish(choice string) (tea.Model, tea.Cmd) {
	m.choice, m.done = choice, true
	if m.o.Chosen != nil {
		m.o.Chosen()
	}
	return m, tea.Quit
}

func (m *Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if m.done { // keys after the choice belong to the target
		return m, nil
	}
	m.status = ""
	switch k.Type {
	case tea.KeyCtrlC, tea.KeyCtrlD:
		return m.finish("")
	case tea.KeyUp:
		m.move(-1)
	case tea.KeyDown, tea.KeyTab:
		m.move(1)
	case tea.KeyPgUp:
		m.move(-m.pageRows())
	case tea.KeyPgDown:
		m.move(m.pageRows())
	case tea.KeyHome:
		m.cursor = 0
	case tea.KeyEnd:
		m.cursor = len(m.rows()) - 1
		m.clamp()
	case tea.KeyEnter:
		return m.enter()
	case tea.KeyEsc:
		if m.filter != "" || m.number != "" {
			m.filter, m.number, m.cursor = "", "", 0
		} else {
			m.back()
		}
	case tea.KeyBackspace, tea.KeyCtrlH:
		switch {
		case m.number != "":
			m.number = m.number[:len(m.number)-1]
			m.jump()
		case m.filter != "":
			m.filter = m.filter[:len(m.filter)-1]
			m.cursor = 0
		}
	case tea.KeyRunes:
		if k.Alt {
			return m, nil
		}
		// Several runes arrive as one key when typed fast or pasted.
		var cmd tea.Cmd
		for _, r := range k.Runes {
			if m.done {
				break
			}
			_, cmd = m.typed(r)
		}
		return m, cmd
	case tea.KeySpace:
		return m, nil
	}
	return m, nil
}

func (m *Model) typed(r rune) (tea.Model, tea.Cmd) {
	if m.filter == "" {
		switch {
		case r == 'q':
			return m.finish("")
		case r == 'r':
			if m.o.Refresh == nil {
				return m, nil
			}
			refresh := m.o.Refresh
			m.status = "refreshing..."
			return m, func() tea.Msg {
				items, err := refresh()
				return refreshedMsg{items, err}
			}
		case r == '0' && m.number == "":
			m.back()
			return m, nil
		case r >= '0' && r <= '9':
			if len(m.number) < 4 {
				m.number += string(r)
			}
			m.jump()
			return m, nil
		case r == '/':
			return m, nil
		}
	}
	if m.number != "" {
		m.number = ""
	}
	if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' || r == '.' || r == '_' || r == ':' {
		if len(m.filter) < 40 {
			m.filter += string(r)
		}
		m.cursor = 0
	}
	return m, nil
}

func (m *Model) jump() {
	n, err := strconv.Atoi(m.number)
	if err == nil && n >= 1 && n <= len(m.rows()) {
		m.cursor = n - 1
	}
}

func (m *Model) move(d int) {
	m.number = ""
	m.cursor += d
	m.clamp()
}

func (m *Model) clamp() {
	n := len(m.rows())
	if m.cursor >= n {
		m.cursor = n - 1
	}
	if m.cursor < 0 {
		m.cursor = 0
	}
}

func (m *Model) enter() (tea.Model, tea.Cmd) {
	rows := m.rows()
	if m.number != "" {
		// A typed number opens its own row or nothing: never the row
		// that happens to be highlighted.
		n, err := strconv.Atoi(m.number)
		m.number = ""
		if err != nil || n < 1 || n > len(rows) {
			m.status = fmt.Sprintf("there is no row %s; type a number from 1 to %d", m.numberText(n, err), len(rows))
			if len(rows) == 0 {
				m.status = "there is no row to open"
			}
			return m, nil
		}
		m.cursor = n - 1
	}
	if len(rows) == 0 || m.cursor >= len(rows) {
		return m, nil
	}
	r := rows[m.cursor]
	m.number = ""
	// A filter typed above the containers narrows the levels below too:
	// it matched this row because of a container under it.
	switch m.level {
	case levelGroups:
		m.level, m.group, m.cursor = levelEnvs, r.key, 0
		m.skipSingle()
	case levelEnvs:
		m.level, m.env, m.cursor = levelTargets, r.key, 0
	default:
		m.filter = ""
		return m.finish(r.key)
	}
	return m, nil
}

// numberText is a typed row number as the user typed it.
func (m *Model) numberText(n int, err error) string {
	if err != nil {
		return "?"
	}
	return strconv.Itoa(n)
}

// skipSingle goes on to the containers when a filter carried into a group
// leaves one environment in it.
func (m *Model) skipSingle() {
	if m.filter == "" {
		return
	}
	if rows := m.rows(); len(rows) == 1 {
		m.level, m.env, m.cursor = levelTargets, rows[0].key, 0
	}
}

func (m *Model) back() {
	if m.level <= m.start {
		return
	}
	prev := m.group
	if m.level == levelTargets {
		prev = m.env
	}
	m.level--
	m.filter, m.number, m.cursor = "", "", 0
	for i, r := range m.rows() {
		if r.key == prev {
			m.cursor = i
		}
	}
}

// groups lists group names ("" last).
func (m *Model) groups() []string {
	seen := map[string]bool{}
	var out []string
	for _, it := range m.items {
		if !seen[it.Group] {
			seen[it.Group] = true
			out = append(out, it.Group)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i] == "") != (out[j] == "") {
			return out[j] == ""
		}
		return out[i] < out[j]
	})
	return out
}

func (m *Model) envs(group string) []string {
	seen := map[string]bool{}
	var out []string
	for _, it := range m.items {
		if it.Group == group && !seen[it.Env] {
			seen[it.Env] = true
			out = append(out, it.Env)
		}
	}
	sort.Strings(out)
	return out
}

// row is one line of the current level.
type row struct {
	key   string // group, env or target name
	cells []string
	item  *Item
}

func (m *Model) matches(s ...string) bool {
	if m.filter == "" {
		return true
	}
	for _, x := range s {
		if strings.Contains(x, m.filter) {
			return true
		}
	}
	return false
}

func (m *Model) rows() []row {
	var out []row
	switch m.level {
	case levelGroups:
		for _, g := range m.groups() {
			envs, n := m.envs(g), 0
			names := []string{g}
			for _, it := range m.items {
				if it.Group == g {
					n++
					names = append(names, it.Name, it.Env)
					names = append(names, it.Aliases...)
				}
			}
			if !m.matches(names...) {
				continue
			}
			label := g
			if g == "" {
				label = UngroupedLabel
			}
			out = append(out, row{key: g, cells: []string{label, strconv.Itoa(len(envs)), strconv.Itoa(n)}})
		}
	case levelEnvs:
		for _, e := range m.envs(m.group) {
			n := 0
			names := []string{e}
			for _, it := range m.items {
				if it.Group == m.group && it.Env == e {
					n++
					names = append(names, it.Name)
					names = append(names, it.Aliases...)
				}
			}
			if !m.matches(names...) {
				continue
			}
			out = append(out, row{key: e, cells: []string{e, strconv.Itoa(n)}})
		}
	default:
		for i := range m.items {
			it := &m.items[i]
			if it.Group != m.group || it.Env != m.env {
				continue
			}
			if !m.matches(append([]string{it.Name, it.Addr, strconv.FormatInt(it.ID, 10)}, it.Aliases...)...) {
				continue
			}
			p := ""
			if it.Primary {
				p = "*"
			}
			alias := strings.Join(it.Aliases, ",")
			if alias == "" {
				alias = "-"
			}
			out = append(out, row{key: it.Name, item: it,
				cells: []string{strconv.FormatInt(it.ID, 10), it.Name, p, alias, it.Addr, it.State}})
		}
	}
	return out
}

func (m *Model) header() []string {
	switch m.level {
	case levelGroups:
		return []string{"GROUP", "ENVS", "CONTAINERS"}
	case levelEnvs:
		return []string{"ENVIRONMENT", "CONTAINERS"}
	}
	return []string{"ID", "NAME", "P", "ALIAS", "ADDRESS", "STATE"}
}

func (m *Model) title() string {
	t := "sshgate  " + m.o.User
	switch m.level {
	case levelGroups:
		t += "  groups"
	case levelEnvs:
		t += "  " + groupLabel(m.group)
	default:
		if m.start < levelTargets {
			t += "  " + groupLabel(m.group) + " > " + m.env
		} else {
			t += "  " + m.env
		}
	}
	return t
}

func groupLabel(g string) string {
	if g == "" {
		return UngroupedLabel
	}
	return g
}

// footerLines is how many lines the bottom of the screen takes.
func (m *Model) footerLines() int {
	if m.level == levelTargets {
		return m.directHeight() + 3 // the direct strings, then status, blank, keys
	}
	return 3
}

// directHeight is the most lines the direct strings of a row take at this
// width (7 where they fit): the same for every row, so the page does not
// change size as the cursor moves.
func (m *Model) directHeight() int {
	n := 7
	for _, r := range m.rows() {
		if r.item != nil {
			n = max(n, len(m.directLines(r.item, m.o.Width)))
		}
	}
	return n
}

func (m *Model) pageRows() int {
	n := len(m.motd())
	if n > 0 {
		n++ // the blank line under it
	}
	return max(1, m.o.Height-3-n-m.footerLines())
}

// motd is the part of the message of the day that fits: at most a third
// of the terminal's height.
func (m *Model) motd() []string {
	return m.o.MOTD[:min(len(m.o.MOTD), m.o.Height/3)]
}

func (m *Model) View() string {
	if m.done {
		return ""
	}
	w := m.o.Width
	cut := func(s string) string { return ellipsis(s, w) }
	rows := m.rows()
	head := m.header()
	// column widths
	widths := make([]int, len(head))
	for i, h := range head {
		widths[i] = len(h)
	}
	for _, r := range rows {
		for i, c := range r.cells {
			widths[i] = max(widths[i], len(c))
		}
	}
	numW := max(1, len(strconv.Itoa(len(rows))))
	line := func(mark, num string, cells []string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %*s  ", mark, numW, num)
		for i, c := range cells {
			if i == len(cells)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s  ", widths[i], c)
			}
		}
		return strings.TrimRight(b.String(), " ")
	}
	var out []string
	out = append(out, cut(m.title()), "")
	if motd := m.motd(); len(motd) > 0 {
		for _, l := range motd {
			out = append(out, cut(l))
		}
		out = append(out, "")
	}
	out = append(out, cut(line(" ", "#", head)))
	page := m.pageRows()
	first := 0
	if m.cursor >= page {
		first = m.cursor - page + 1
	}
	// Rows that do not fit are announced, not silently left off: the last
	// line of the page says how many more there are above and below.
	above, below := first, max(0, len(rows)-first-page)
	if (above > 0 || below > 0) && page > 1 {
		page--
		if m.cursor >= first+page {
			first++
			above = first
		}
		below = max(0, len(rows)-first-page)
	}
	for i := first; i < len(rows) && i < first+page; i++ {
		l := cut(line(" ", strconv.Itoa(i+1), rows[i].cells))
		if i == m.cursor {
			l = m.sel.Render(cut(line(">", strconv.Itoa(i+1), rows[i].cells)))
		}
		out = append(out, l)
	}
	if above > 0 || below > 0 {
		out = append(out, cut(fmt.Sprintf("  ... %d more above, %d more below (PgUp/PgDn, or type a number)", above, below)))
	}
	if len(rows) == 0 {
		if m.filter != "" {
			out = append(out, cut("  nothing matches the filter"))
		} else {
			out = append(out, cut("  no targets are granted to "+m.o.User))
		}
	}
	// pad to the footer
	for len(out) < m.o.Height-m.footerLines() {
		out = append(out, "")
	}
	if m.level == levelTargets {
		if m.cursor < len(rows) && rows[m.cursor].item != nil {
			d := m.directLines(rows[m.cursor].item, w)
			out = append(append(out, d...), make([]string, m.directHeight()-len(d))...)
		} else {
			out = append(out, make([]string, m.directHeight())...)
		}
	}
	status := m.status
	switch {
	case m.number != "":
		status = "number: " + m.number
	case m.filter != "":
		status = "filter: " + m.filter
	}
	out = append(out, cut(status))
	keys := "Up/Down or number, Enter open, Esc/0 back, type to filter, r refresh, q quit"
	if m.level == levelTargets {
		keys = "Up/Down or number, Enter connect, Esc/0 back, type to filter, r refresh, q quit"
	}
	out = append(out, "", cut(keys))
	if len(out) > m.o.Height {
		out = out[len(out)-m.o.Height:]
	}
	return strings.Join(out, "\n")
}

// ellipsis cuts s to w columns, ending in "…" when something was cut (names
// and addresses are ASCII; other runes count one column each).
func ellipsis(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= w {
		return s
	}
	r := []rune(s)
	return string(r[:w-1]) + "…"
}

// direct are the copyable strings that reach it without the menu, each a
// shell command line.
func (m *Model) direct(it *Item) []string {
	u := m.o.User + "+" + it.Name
	h, p := m.o.Host, m.o.Port
	// scp, sftp and lftp read HOST:PATH and a URL: an IPv6 address needs
	// its brackets there (ssh takes it bare, and would not resolve them).
	bh := h
	if strings.Contains(h, ":") {
		bh = "[" + h + "]"
	}
	out := []string{
		fmt.Sprintf("ssh  -p %s %s@%s", p, u, h),
		fmt.Sprintf("scp  -P %s FILE %s@%s:", p, u, bh),
		fmt.Sprintf("sftp -P %s %s@%s", p, u, bh),
		// lftp drops a user given in a fish:// URL: -u carries it.
		fmt.Sprintf("lftp -u %s, -p %s fish://%s", u, p, bh),
	}
	if m.o.UID != 0 && it.ID != 0 {
		// The note is a shell comment: the whole line runs as copied.
		out = append(out, fmt.Sprintf("ssh  -p %s %d-%d@%s   # NODEID-UID", p, it.ID, m.o.UID, h))
	}
	return out
}

// directLines are it's direct strings as drawn w columns wide: a blank
// line, the strings (the NODEID-UID line, or a blank), a blank line. A
// string wider than the screen is never cut: it is folded with a backslash
// before each line break, so the lines as copied still run as one command
// line in a shell (backslash-newline joins them, inside a word too); a
// trailing comment that does not fit is left off, as a comment would end
// at the first line break.
func (m *Model) directLines(it *Item, w int) []string {
	out := []string{""}
	strs := m.direct(it)
	for _, s := range strs {
		out = append(out, fold("  "+s, w)...)
	}
	if len(strs) < 5 {
		out = append(out, "")
	}
	return append(out, "")
}

// fold breaks command line s into lines of at most w columns, each but the
// last ending in a backslash, the continuations from column 0: after a
// blank where the word that follows then fits on a line of its own, else
// inside the word (backslash-newline joins it again).
func fold(s string, w int) []string {
	if utf8.RuneCountInString(s) <= w {
		return []string{s}
	}
	if i := strings.Index(s, "   # "); i >= 0 {
		return fold(s[:i], w) // the note goes; the command stays whole
	}
	if w < 2 {
		return []string{ellipsis(s, w)}
	}
	var out []string
	r := []rune(s)
	for len(r) > w {
		n := w - 1 // room for the backslash
		for j := n; j > 0; j-- {
			if r[j-1] == ' ' {
				word := len(r) - j
				if k := strings.IndexRune(string(r[j:]), ' '); k >= 0 {
					word = utf8.RuneCountInString(string(r[j:])[:k])
				}
				if word <= w-1 {
					n = j
				}
				break
			}
		}
		out = append(out, string(r[:n])+"\\")
		r = r[n:]
	}
	return append(out, string(r))
}
