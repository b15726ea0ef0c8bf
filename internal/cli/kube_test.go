package cli

import (
	"os"
	"path/filepath"
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

// TestTargetAddPodTemplate: --pod-template is read, checked and stored;
// a bad one is named with the file and the problem, exit 2.
func TestTargetAddPodTemplate(t *testing.T) {
	data := t.TempDir()
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("good.yaml", "apiVersion: v1\nkind: Pod\nspec:\n  nodeSelector: {disk: ssd}\n  containers: [{name: main, image: registry.local/lab:1}]\n")
	priv := file("priv.yaml", "spec:\n  containers: [{name: main, securityContext: {privileged: true}}]\n")
	notYAML := file("bad.yaml", "spec: [unclosed\n")
	kind := file("kind.yaml", "apiVersion: apps/v1\nkind: Deployment\nspec: {}\n")
	field := file("field.yaml", "spec:\n  containers: [{name: main, imag: x}]\n")
	kt := func(name string, extra ...string) []string {
		return append([]string{"target", "add", name, "--env", "dev", "--kubernetes"}, extra...)
	}
	runSteps(t, data, []step{
		{args: []string{"env", "add", "dev"}, out: "added env dev\n"},
		{args: kt("lab", "--pod-template", good), outHas: []string{"not checked against a cluster", "added target lab (kubernetes) in env dev"}},
		{args: []string{"target", "show", "lab"}, outHas: []string{"registry.local/lab:1", "pod template", "yes"}},
		{args: kt("p1", "--pod-template", priv, "--image", "x"), code: 2, errHas: []string{"--pod-template " + priv + ": spec.containers[0].securityContext.privileged: a privileged container is not allowed (only with --allow-host-access)"}},
		{args: kt("p2", "--pod-template", priv, "--image", "x", "--allow-host-access"), outHas: []string{"added target p2"}},
		{args: kt("x", "--pod-template", notYAML, "--image", "x"), code: 2, errHas: []string{"--pod-template " + notYAML + ": not YAML"}},
		{args: kt("x", "--pod-template", kind, "--image", "x"), code: 2, errHas: []string{`kind "Deployment"`}},
		{args: kt("x", "--pod-template", field, "--image", "x"), code: 2, errHas: []string{`unknown field "spec.containers[0].imag"`}},
		{args: kt("x", "--pod-template", filepath.Join(dir, "missing.yaml"), "--image", "x"), code: 2, errHas: []string{"missing.yaml: no such file"}},
		{args: kt("x", "--image", "x", "--allow-host-access"), code: 2, errHas: []string{"--allow-host-access is for --pod-template"}},
		{args: kt("x", "--image", "x", "--root-inside", "--user", "1000"), code: 2, errHas: []string{`--root-inside runs as root; --user "1000"`}},
		{args: kt("root", "--image", "x", "--root-inside"), outHas: []string{"added target root"}},
		{args: []string{"target", "add", "x", "--env", "dev", "--docker", "alpine", "--pod-template", good}, code: 2, errHas: []string{"--pod-template is for --kubernetes targets"}},
		{args: []string{"target", "add", "x", "--env", "dev", "--upstream", "127.0.0.1:22", "--login", "a", "--host-ca", "--root-inside"}, code: 2, errHas: []string{"--root-inside is for --docker targets"}},
	})
}
