package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/internal/app"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "listen: 0.0.0.0:2222\ndocker:\n  default_pids: 64\n")
	bad := writeFile(t, dir, "bad.yaml", "log:\n  levle: debug\nlisten: 127.0.0.1:70000\n")
	runSteps(t, "", []step{
		{args: []string{"check-config", "--config", good}, out: good + ": ok\n"},
		{args: []string{"check-config"}, out: "no --config given: the defaults are valid\n"},
		{args: []string{"check-config", "--bogus"}, code: 2, errHas: []string{"check-config: unknown flag: --bogus"}},
		{args: []string{"check-config", "extra"}, code: 2, errHas: []string{`check-config: unexpected argument "extra"`}},
		{args: []string{"check-config", "--config", dir + "/none.yaml"}, code: 1, errHas: []string{"none.yaml: cannot read: no such file or directory"}},
	})
	code, out, errOut := runCLI(t, "", "", "check-config", "--config", bad)
	want := bad + ":2: log.levle: unknown key (did you mean level?)\n" +
		bad + ":3: listen: port \"70000\" is not a number from 0 to 65535\n" +
		"sshgate: 2 problems in " + bad + "\n"
	if code != 1 || out != "" || errOut != want {
		t.Fatalf("check-config bad: exit %d, stdout %q, stderr\n%s\nwant\n%s", code, out, errOut, want)
	}

	// serve reports the same list and refuses to start.
	serveFunc = func(ctx context.Context, o app.Options) error { _, err := app.LoadConfig(o); return err }
	t.Cleanup(func() { serveFunc = app.Serve })
	code, _, errOut = runCLI(t, t.TempDir(), "", "serve", "--config", bad)
	if code != 2 || !strings.Contains(errOut, "invalid configuration:\n"+bad+":2: log.levle: unknown key (did you mean level?)\n"+bad+":3: listen:") {
		t.Fatalf("serve with a bad config: exit %d, stderr %q", code, errOut)
	}
}
