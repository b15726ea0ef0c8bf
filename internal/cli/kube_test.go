package cli

import (
	"testing"
)

// TestTargetAddKubernetes: `target add --kubernetes --image` and the flags
// it refuses, each naming the bad value with exit 2.
func TestTargetAddKubernetes(t *testing.T) {
	data := t.TempDir()
	kt := func(name string, extra ...string) []string {
		return append([]string{"target", "add", name, "--env", "dev", "--kubernetes"}, extra...)
	}
	runSteps(t, data, []step{
		{args: []string{"env", "add", "dev"}, out: "added env dev\n"},
		{args: kt("lab", "--image", "busybox:1.36", "--namespace", "labs", "--user", "1000:1000", "--memory", "256m", "--cpus", "0.5",
			"--per", "user", "--idle-ttl", "10m", "--setenv", "LANG=C.UTF-8", "--login", "dev"), out: "added target lab (kubernetes) in env dev\n"},
		{args: kt("pool", "--image", "busybox:1.36", "--pool", "2"), out: "added target pool (kubernetes) in env dev\n"},
		{args: []string{"target", "show", "lab"}, outHas: []string{"kubernetes", "busybox:1.36", "labs", "1000:1000", "256m", "0.5", "user", "10m"}},
		{args: []string{"target", "list"}, outHas: []string{"1   lab   dev  kubernetes  dev    busybox:1.36"}},
		{args: kt("x"), code: 2, errHas: []string{`--image "": want an image reference`}},
		{args: kt("x", "--image", "a b"), code: 2, errHas: []string{`--image "a b"`}},
		{args: kt("x", "--image", "busybox", "--namespace", "Bad_NS"), code: 2, errHas: []string{`--namespace "Bad_NS"`}},
		{args: kt("x", "--image", "busybox", "--user", "app"), code: 2, errHas: []string{`--user "app": want UID or UID:GID`}},
		{args: kt("x", "--image", "busybox", "--mount", "/srv:/srv"), code: 2, errHas: []string{"--mount is for --docker targets"}},
		{args: kt("x", "--image", "busybox", "--per", "ever"), code: 2, errHas: []string{`--per "ever"`}},
		{args: kt("x", "--image", "busybox", "--cpus", "lots"), code: 2, errHas: []string{`--cpus "lots"`}},
		{args: kt("x", "--image", "busybox", "--docker", "alpine"), code: 2, errHas: []string{"exactly one of --upstream, --docker and --kubernetes"}},
		{args: []string{"target", "add", "x", "--env", "dev", "--docker", "alpine", "--image", "busybox"}, code: 2, errHas: []string{"--image is for --kubernetes targets"}},
	})
}
