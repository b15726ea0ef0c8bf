package menu

import (
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
)

func items() []Item {
	return []Item{
		{ID: 1, Name: "web-1", Aliases: []string{"www"}, Env: "prod", Group: "shop", Addr: "10.0.0.1:22", State: "running", Primary: true},
		{ID: 3, Name: "api-1", Env: "prod", Group: "shop", Addr: "10.0.0.3:22", State: "stopped"},
		{ID: 4, Name: "shop-dev", Env: "dev", Group: "shop", Addr: "docker", State: "starts on connect"},
		{ID: 5, Name: "box", Env: "lab", Addr: "docker", State: "starts on connect"},
	}
}

func newModel(its []Item, o Options) *Model {
	r := lipgloss.NewRenderer(nil, termenv.WithProfile(termenv.Ascii))
	if o.User == "" {
		o.User, o.UID, o.Host, o.Port = "alice", 7, "gate.example", "2222"
	}
	return New(its, o, r)
}

func key(s string) tea.KeyMsg {
	switch s {
	case "enter":
		return tea.KeyMsg{Type: tea.KeyEnter}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "up":
		return tea.KeyMsg{Type: tea.KeyUp}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	case "bs":
		return tea.KeyMsg{Type: tea.KeyBackspace}
	case "ctrl+c":
		return tea.KeyMsg{Type: tea.KeyCtrlC}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

func TestNavigation(t *testing.T) {
	tests := []struct {
		name   string
		items  []Item
		keys   []string
		choice string
		quit   bool   // the program was told to stop
		screen string // the view contains this
	}{
		{"groups first", items(), nil, "", false, "GROUP"},
		{"ungrouped last", items(), []string{"down"}, "", false, "> 2  " + UngroupedLabel},
		{"into a group", items(), []string{"enter"}, "", false, "ENVIRONMENT"},
		{"envs sorted", items(), []string{"enter"}, "", false, "> 1  dev"},
		{"to containers", items(), []string{"enter", "down", "enter"}, "", false, "shop > prod"},
		{"connect", items(), []string{"enter", "2", "enter", "enter"}, "web-1", true, ""},
		{"number", items(), []string{"enter", "2", "enter", "2", "enter"}, "api-1", true, ""},
		{"arrow", items(), []string{"enter", "down", "enter", "down", "enter"}, "api-1", true, ""},
		{"esc back", items(), []string{"enter", "esc"}, "", false, "GROUP"},
		{"zero back", items(), []string{"enter", "0"}, "", false, "GROUP"},
		{"esc at top stays", items(), []string{"esc"}, "", false, "GROUP"},
		{"q quits", items(), []string{"q"}, "", true, ""},
		{"ctrl+c quits", items(), []string{"enter", "ctrl+c"}, "", true, ""},
		{"filter by alias", items(), []string{"enter", "2", "enter", "w", "w", "enter"}, "web-1", true, ""},
		{"filter typed at once", items(), []string{"enter", "2", "enter", "api", "enter"}, "api-1", true, ""},
		{"filter shows", items(), []string{"enter", "2", "enter", "ap"}, "", false, "filter: ap"},
		{"filter none", items(), []string{"enter", "2", "enter", "zz"}, "", false, "nothing matches"},
		{"filter esc clears", items(), []string{"enter", "2", "enter", "zz", "esc", "enter"}, "web-1", true, ""},
		{"filter backspace", items(), []string{"enter", "2", "enter", "apz", "bs", "enter"}, "api-1", true, ""},
		{"q inside a filter is text", items(), []string{"enter", "2", "enter", "aq"}, "", false, "filter: aq"},
		{"filter on groups skips a single env", items(), []string{"box", "enter"}, "", false, "filter: box"},
		{"number out of range stays", items(), []string{"9", "enter"}, "", false, "there is no row 9; type a number from 1 to 2"},
		{"number out of range never connects", items(), []string{"enter", "2", "enter", "9", "enter"}, "", false, "there is no row 9; type a number from 1 to 2"},
		{"number out of range then a good one", items(), []string{"enter", "2", "enter", "9", "enter", "2", "enter"}, "api-1", true, ""},
		{"typed number wins over the highlight", items(), []string{"enter", "2", "enter", "down", "1", "enter"}, "web-1", true, ""},
		{"filter on groups carries down", items(), []string{"api", "enter", "enter"}, "api-1", true, ""},
		{"filter on groups narrows envs", items(), []string{"dev", "enter"}, "", false, "shop-dev"},
		{"one group skips to envs", items()[:3], nil, "", false, "ENVIRONMENT"},
		{"one env skips to containers", items()[3:], nil, "", false, "> 1  5   box"},
		{"single container connects", items()[3:], []string{"enter"}, "box", true, ""},
		{"no items", nil, nil, "", false, "no targets are granted to alice"},
		{"no items enter", nil, []string{"enter"}, "", false, "no targets"},
		{"direct strings", items()[3:], nil, "", false, "lftp -u alice+box, -p 2222 fish://gate.example"},
		{"platform string", items()[3:], nil, "", false, "ssh  -p 2222 5-7@gate.example"},
		{"scp string", items()[3:], nil, "", false, "scp  -P 2222 FILE alice+box@gate.example:"},
		{"primary marker", items()[:2], nil, "", false, "web-1  *  www"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newModel(tt.items, Options{})
			var cmd tea.Cmd
			for _, k := range tt.keys {
				_, cmd = m.Update(key(k))
			}
			got, ok := m.Choice()
			if got != tt.choice || ok != (tt.choice != "") {
				t.Errorf("choice %q %v, want %q", got, ok, tt.choice)
			}
			if quit := cmd != nil && isQuit(cmd); quit != tt.quit {
				t.Errorf("quit = %v, want %v", quit, tt.quit)
			}
			if v := m.View(); tt.screen != "" && !strings.Contains(v, tt.screen) {
				t.Errorf("view lacks %q:\n%s", tt.screen, v)
			}
		})
	}
}

func isQuit(cmd tea.Cmd) bool {
	_, ok := cmd().(tea.QuitMsg)
	return ok
}

func TestChosenStopsInputFirst(t *testing.T) {
	stopped := 0
	m := newModel(items()[3:], Options{User: "alice", Chosen: func() { stopped++ }})
	m.Update(key("enter"))
	if stopped != 1 {
		t.Fatalf("Chosen called %d times, want once", stopped)
	}
	m.Update(key("enter")) // keys after the choice change nothing
	if c, _ := m.Choice(); c != "box" || stopped != 1 {
		t.Fatalf("after the choice: %q, Chosen %d", c, stopped)
	}
}

func TestRefresh(t *testing.T) {
	calls := 0
	m := newModel(items()[3:], Options{User: "alice", Refresh: func() ([]Item, error) { calls++; return items(), nil }})
	_, cmd := m.Update(key("r"))
	if cmd == nil {
		t.Fatal("r gave no command")
	}
	m.Update(cmd())
	if calls != 1 || !strings.Contains(m.View(), "refreshed") {
		t.Fatalf("refresh: %d calls, view:\n%s", calls, m.View())
	}
}

func TestResume(t *testing.T) {
	m := newModel(items(), Options{User: "alice", At: "api-1"})
	if v := m.View(); !strings.Contains(v, "shop > prod") || !strings.Contains(v, "> 2  3   api-1") {
		t.Fatalf("At api-1 opened elsewhere:\n%s", v)
	}
	m.Update(key("esc"))
	if v := m.View(); !strings.Contains(v, "> 2  prod") {
		t.Fatalf("Esc from a resumed list:\n%s", v)
	}
}

// The screen always fits the terminal, however small or large, at every level.
func TestViewFits(t *testing.T) {
	many := items()
	for i := 0; i < 60; i++ {
		many = append(many, Item{ID: int64(100 + i), Name: "node-" + strings.Repeat("x", i%30), Env: "prod", Group: "shop", Addr: "10.1.1.1:22", State: "running"})
	}
	for _, size := range [][2]int{{80, 24}, {40, 10}, {20, 5}, {200, 60}, {1, 1}} {
		for _, keys := range [][]string{nil, {"enter"}, {"enter", "2", "enter"}, {"enter", "2", "enter", "down", "down", "down", "down", "down", "down", "down", "down", "down", "down", "down", "down", "down", "down", "down", "down", "down", "down", "down", "down"}} {
			m := newModel(many, Options{})
			m.Update(tea.WindowSizeMsg{Width: size[0], Height: size[1]})
			for _, k := range keys {
				m.Update(key(k))
			}
			lines := strings.Split(m.View(), "\n")
			if len(lines) > size[1] {
				t.Errorf("%v after %v: %d lines", size, keys, len(lines))
			}
			for _, l := range lines {
				if utf8.RuneCountInString(l) > size[0] {
					t.Errorf("%v after %v: line %q is %d wide", size, keys, l, utf8.RuneCountInString(l))
				}
			}
			if size[1] >= 24 && len(keys) > 3 && !strings.Contains(m.View(), "> ") {
				t.Errorf("%v: the highlighted row scrolled out of view:\n%s", size, m.View())
			}
		}
	}
}

// The message of the day sits under the title, takes at most a third of
// the height, and the view still fits with the highlighted row in it.
func TestMOTD(t *testing.T) {
	motd := []string{"Welcome to the lab.", "Maintenance Friday 18:00."}
	m := newModel(items(), Options{MOTD: motd})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	v := m.View()
	lines := strings.Split(v, "\n")
	if lines[2] != motd[0] || lines[3] != motd[1] || lines[4] != "" {
		t.Fatalf("the motd is not under the title:\n%s", v)
	}
	long := make([]string, 40)
	for i := range long {
		long[i] = strings.Repeat("m", 100)
	}
	for _, size := range [][2]int{{80, 24}, {40, 10}, {20, 5}, {1, 1}} {
		m := newModel(items(), Options{MOTD: long})
		m.Update(tea.WindowSizeMsg{Width: size[0], Height: size[1]})
		m.Update(key("enter"))
		v := m.View()
		lines := strings.Split(v, "\n")
		if len(lines) > size[1] {
			t.Errorf("%v: %d lines", size, len(lines))
		}
		n := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "m") {
				n++
			}
		}
		if n > size[1]/3 {
			t.Errorf("%v: %d motd lines, more than a third of the height", size, n)
		}
		for _, l := range lines {
			if utf8.RuneCountInString(l) > size[0] {
				t.Errorf("%v: line %q is %d wide", size, l, utf8.RuneCountInString(l))
			}
		}
		if size[1] >= 10 && !strings.Contains(v, "> ") {
			t.Errorf("%v: the highlighted row is not in view:\n%s", size, v)
		}
	}
}

// Any key sequence leaves the model consistent: no panic, the view fits.
func FuzzKeys(f *testing.F) {
	for _, s := range []string{"", "\r", "2\r\r", "q", "www\r", "\x1b0\x1b", "r", "99999\r", "a\x7f\x7f\r"} {
		f.Add(s, uint8(80), uint8(24))
	}
	f.Fuzz(func(t *testing.T, in string, w, h uint8) {
		m := newModel(items(), Options{Refresh: func() ([]Item, error) { return items()[1:], nil }})
		m.Update(tea.WindowSizeMsg{Width: int(w), Height: int(h)})
		for _, r := range in {
			var msg tea.KeyMsg
			switch r {
			case '\r':
				msg = key("enter")
			case 0x1b:
				msg = key("esc")
			case 0x7f:
				msg = key("bs")
			case 0x10:
				msg = key("up")
			case 0x0e:
				msg = key("down")
			default:
				msg = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}}
			}
			if _, cmd := m.Update(msg); cmd != nil && !m.done {
				if rm, ok := cmd().(refreshedMsg); ok {
					m.Update(rm)
				}
			}
		}
		if c, ok := m.Choice(); ok && c == "" {
			t.Fatal("ok with no choice")
		}
		lines := strings.Split(m.View(), "\n")
		if len(lines) > max(int(h), 1) && !m.done {
			t.Fatalf("%d lines for height %d", len(lines), h)
		}
		for _, l := range lines {
			if utf8.RuneCountInString(l) > int(w) {
				t.Fatalf("line %q wider than %d", l, w)
			}
		}
	})
}

// shellWords runs text (command lines for ssh, scp, sftp, lftp) in sh with
// each client a function that prints its arguments: what the client would
// be given.
func shellWords(t *testing.T, text string) string {
	t.Helper()
	fns := ""
	for _, c := range []string{"ssh", "scp", "sftp", "lftp"} {
		fns += c + `() { printf '%s<%s>' "$0" "$@"; echo; }; `
	}
	out, err := exec.Command("sh", "-c", fns+text).CombinedOutput()
	if err != nil {
		t.Fatalf("sh: %v: %s\n%s", err, out, text)
	}
	return string(out)
}

// A direct string wider than the screen is folded, never cut: the lines as
// copied give the clients the same arguments as the whole string, and each
// fits the width. An IPv6 gate address is bracketed where scp, sftp and
// lftp need it.
func TestDirectStringsFolded(t *testing.T) {
	long := Item{ID: 123456, Name: "payments-api-production-eu-west-1-blue-" + strings.Repeat("x", 20), Env: "prod", Group: "shop", Addr: "10.0.0.1:22", State: "running"}
	for _, host := range []string{"gate.example", "2001:db8::17"} {
		m := newModel([]Item{long}, Options{User: "alice", UID: 7, Host: host, Port: "2222"})
		whole := strings.Join(m.direct(&long), "\n")
		want := shellWords(t, whole)
		for _, w := range []int{200, 80, 40, 20, 3} {
			lines := m.directLines(&long, w)
			for _, l := range lines {
				if utf8.RuneCountInString(l) > w {
					t.Errorf("host %s, width %d: line %q is wider", host, w, l)
				}
			}
			if got := shellWords(t, strings.Join(lines, "\n")); got != want {
				t.Errorf("host %s, width %d: the folded lines\n%s\nrun as\n%s\nwant\n%s", host, w, strings.Join(lines, "\n"), got, want)
			}
			m.Update(tea.WindowSizeMsg{Width: w, Height: 40}) // one env: it opens on its targets
			if v := m.View(); w >= 20 && !strings.Contains(v, lines[1]) {
				t.Errorf("width %d: the view does not show %q:\n%s", w, lines[1], v)
			}
		}
	}
	m := newModel(nil, Options{User: "alice", UID: 7, Host: "::1", Port: "2222"})
	got := strings.Join(m.direct(&Item{ID: 1, Name: "web-1"}), "\n")
	for _, want := range []string{"ssh  -p 2222 alice+web-1@::1\n", "scp  -P 2222 FILE alice+web-1@[::1]:\n", "sftp -P 2222 alice+web-1@[::1]\n", "lftp -u alice+web-1, -p 2222 fish://[::1]\n", "ssh  -p 2222 1-7@::1   # NODEID-UID"} {
		if !strings.Contains(got, want) {
			t.Errorf("direct strings for ::1 have no %q:\n%s", want, got)
		}
	}
}
