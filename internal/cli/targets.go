package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/app"
	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/target/container"
	"github.com/sshgate/sshgate/internal/target/docker"
	"github.com/sshgate/sshgate/internal/target/kube"
	corev1 "k8s.io/api/core/v1"
)

// ScanTimeout bounds --scan-host-key: dial and key exchange.
const ScanTimeout = 10 * time.Second

// hostKeyPreference is the order host keys are asked for and chosen in.
var hostKeyPreference = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

var networkRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

type targetFlags struct {
	env, upstream, login, hostKeyFile string
	scan                              bool
	image, user                       string
	kubernetes                        bool   // --kubernetes (with --image)
	kubeImage, namespace              string // --image, --namespace
	cmd, mounts, setenv               []string
	memory, cpus, network, per, ttl   string
	pids, pool                        int
	skipImageCheck                    bool
	podTemplate                       string // --pod-template FILE (kubernetes)
	allowHost, rootInside             bool   // --allow-host-access, --root-inside
	// certificates (ca.go): login method, host CA verification
	auth, hostPrincipal string
	hostCA              bool
	caUser, caHost      bool // the gate has a user / host CA (read before checking the flags)
}

func (e *env) targetCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "target", Short: "Manage targets (hosts and containers users reach)", Args: cobra.ArbitraryArgs, RunE: group,
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true}}
	var f targetFlags
	add := &cobra.Command{
		Use:   "add NAME --env ENV (--upstream HOST:PORT --login USER (--host-key FILE | --scan-host-key | --host-ca) [--auth cert|key] | --docker IMAGE ... | --kubernetes --image IMAGE [--namespace NS] ...)",
		Short: "Add a target: an existing SSH server (--upstream), a container (--docker) or a pod (--kubernetes) started on demand",
		Args:  argsOf([]string{"NAME"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := e.readCAState(&f); err != nil {
				return err
			}
			t, err := f.target(cmd, args[0])
			if err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			// Check what the store would refuse before scanning a host.
			if _, err := st.GetTarget(ctx, t.Name); err == nil {
				return failf("target %q already exists", t.Name)
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if err := envExists(ctx, st, t.Env); err != nil {
				return err
			}
			if t.Kind == gate.KindUpstream && !f.scan && f.hostKeyFile == "" {
				principal := ca.HostPrincipal(t.Upstream.HostPrincipal, t.Upstream.Addr)
				if !f.hostCA {
					fmt.Fprintf(e.stdout, "host key of %s: none pinned, so each connection verifies a host certificate from the gate's host CA "+
						"(the default once `ca init` has run; --host-key FILE or --scan-host-key pins a key instead)\n", t.Name)
				}
				e.checkHostCert(ctx, t.Name, t.Upstream.Addr, principal)
			} else if t.Kind == gate.KindUpstream {
				var k ssh.PublicKey
				if f.scan {
					if k, err = scanHostKey(ctx, t.Upstream.Addr); err != nil {
						return failf("scan host key of %s: %v", t.Upstream.Addr, err)
					}
					fmt.Fprintf(e.stdout, "scanned host key for %s: %s %s\n", t.Name, k.Type(), sshkeys.Fingerprint(k))
				} else {
					if k, err = readHostKeyFile(f.hostKeyFile); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "pinned host key for %s: %s %s\n", t.Name, k.Type(), sshkeys.Fingerprint(k))
				}
				t.Upstream.HostKey = sshkeys.AuthorizedLine(k)
			}
			if t.Kind == gate.KindDocker {
				imageUser := ""
				if !f.skipImageCheck {
					if imageUser, err = checkImage(ctx, e.stdout, t.Docker.Image); err != nil {
						return err
					}
				}
				if t.Login == "" {
					if t.Login = containerLogin(t.Docker.User, imageUser); t.Login != "" {
						fmt.Fprintf(e.stdout, "default login %s: the user the container runs as\n", t.Login)
					}
				}
			}
			if t.Kind == gate.KindDocker && t.Docker.RootInside {
				if err := checkDockerRemap(ctx, e.stdout); err != nil {
					return err
				}
			}
			if t.Kind == gate.KindKubernetes {
				if err := e.checkKubeTarget(ctx, t, f.podTemplate); err != nil {
					return err
				}
			}
			if err := st.AddTarget(ctx, t); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "added target %s (%s) in env %s\n", t.Name, t.Kind, t.Env)
			return nil
		}),
	}
	fl := add.Flags()
	fl.StringVar(&f.env, "env", "", "environment of the target (required)")
	fl.StringVar(&f.upstream, "upstream", "", "HOST:PORT of an SSH server (sshd or sshgate-agent)")
	fl.StringVar(&f.login, "login", "", "default login on the target")
	fl.StringVar(&f.hostKeyFile, "host-key", "", "file with the target's public host key (ssh_host_*_key.pub or a known_hosts line)")
	fl.BoolVar(&f.scan, "scan-host-key", false, "connect to the upstream now and pin the host key it presents")
	fl.BoolVar(&f.hostCA, "host-ca", false, "pin no host key: verify the target's host certificate against the gate's host CA (the default when a host CA exists)")
	fl.StringVar(&f.hostPrincipal, "host-principal", "", "name the target's host certificate must carry (default: the host of --upstream)")
	fl.StringVar(&f.auth, "auth", "", "how the gate logs in: cert (a short-lived certificate, then the gate key; the default when the gate has a CA) or key (the gate key only)")
	fl.StringVar(&f.image, "docker", "", "image of a container started per connection or per user")
	fl.StringVar(&f.user, "user", "", "user in the container, e.g. 1000:1000 (docker)")
	fl.StringArrayVar(&f.cmd, "cmd", nil, "container command, one argument per flag (docker)")
	fl.StringArrayVar(&f.mounts, "mount", nil, "bind mount SRC:DST[:ro] (docker, repeatable)")
	fl.StringArrayVar(&f.setenv, "setenv", nil, "KEY=VALUE in the container's environment (docker, repeatable)")
	fl.StringVar(&f.memory, "memory", "", "memory limit, e.g. 512m (docker)")
	fl.StringVar(&f.cpus, "cpus", "", "CPU limit, e.g. 1.5 (docker)")
	fl.IntVar(&f.pids, "pids", 0, "process limit (docker)")
	fl.StringVar(&f.network, "network", "", "none (default) or a docker network name (docker)")
	fl.StringVar(&f.per, "per", "", "connection (default): a container per connection; user: one per user, kept for --idle-ttl")
	fl.StringVar(&f.ttl, "idle-ttl", "", "how long an idle per-user container is kept, e.g. 10m (docker, --per user)")
	fl.IntVar(&f.pool, "pool", 0, "warm containers kept ready (docker)")
	fl.BoolVar(&f.kubernetes, "kubernetes", false, "a pod started per connection or per user on the gate's Kubernetes cluster (with --image)")
	fl.StringVar(&f.kubeImage, "image", "", "image of the pod's container (kubernetes)")
	fl.StringVar(&f.namespace, "namespace", "", "namespace of the pods (kubernetes; default: kubernetes.namespace)")
	fl.StringVar(&f.podTemplate, "pod-template", "", "YAML file of a Pod or PodTemplate the pods start from (kubernetes; see the README for what it may set)")
	fl.BoolVar(&f.allowHost, "allow-host-access", false, "let the pod template use privileged containers, hostPath volumes, the node's namespaces and added capabilities (kubernetes)")
	fl.BoolVar(&f.rootInside, "root-inside", false, "run as root inside the container, only where the engine maps root to an unprivileged user on the node (dockerd --userns-remap; Kubernetes user namespaces)")
	fl.BoolVar(&f.skipImageCheck, "skip-image-check", false, "add a docker target whose image is not on the engine yet (the gate never pulls images)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List targets",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			st, err := e.store()
			if err != nil {
				return err
			}
			ts, err := st.ListTargets(cmd.Context())
			if err != nil {
				return err
			}
			infos, err := targetInfos(cmd.Context(), st)
			if err != nil {
				return err
			}
			tw := newTable(e.stdout, "ID", "NAME", "ENV", "KIND", "LOGIN", "ADDRESS", "ALIASES")
			for _, t := range ts {
				addr := ""
				switch {
				case t.Upstream != nil:
					addr = t.Upstream.Addr
				case t.Docker != nil:
					addr = t.Docker.Image
				case t.Kubernetes != nil:
					addr = t.Kubernetes.Image
				}
				ti := infos[t.Name]
				tw.row(strconv.FormatInt(ti.ID, 10), t.Name, t.Env, t.Kind, orDash(t.Login), orDash(addr), orDash(strings.Join(ti.Aliases, ",")))
			}
			return tw.flush()
		}),
	}

	remove := e.removeCommand("target", "Remove a target and the grants naming it",
		func(ctx context.Context, st store.Store, name string) error { return st.RemoveTarget(ctx, name) })

	var showConfig string
	show := &cobra.Command{
		Use:   "show NAME [--config FILE]",
		Short: "Show a target",
		Args:  argsOf([]string{"NAME"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if err := checkName("target", args[0]); err != nil {
				return err
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			t, err := st.GetTarget(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			ti, err := st.GetTargetInfo(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			cfg, err := config.Check(showConfig, nil)
			if err != nil {
				return usagef("target show: %v", err)
			}
			return showTarget(e.stdout, t, cfg.Docker, infoRows(ti)...)
		}),
	}
	show.Flags().StringVar(&showConfig, "config", "", "YAML configuration file, for the docker.* defaults a target without its own limits gets")
	var pinFile, pinPrincipal string
	var pinScan, pinCA bool
	pin := &cobra.Command{
		Use:   "pin-host-key NAME (--host-key FILE | --scan-host-key | --host-ca [--host-principal NAME])",
		Short: "Replace the pinned host key of an upstream target (after the host was rebuilt); grants are kept",
		Args:  argsOf([]string{"NAME"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkName("target", name); err != nil {
				return err
			}
			if pinCA || cmd.Flags().Changed("host-principal") {
				return e.unpinHostKey(cmd, name, cmd.Flags().Changed("host-key") || pinScan, pinPrincipal)
			}
			if cmd.Flags().Changed("host-key") == pinScan {
				return usagef("target pin-host-key %s: give exactly one of --host-key FILE and --scan-host-key", name)
			}
			var k ssh.PublicKey
			var err error
			if !pinScan {
				if k, err = readHostKeyFile(pinFile); err != nil {
					return err
				}
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			t, err := st.GetTarget(ctx, name)
			if err != nil {
				return err
			}
			if t.Upstream == nil {
				return failf("target %q is a %s target: it has no host key to pin", name, t.Kind)
			}
			if pinScan {
				if k, err = scanHostKey(ctx, t.Upstream.Addr); err != nil {
					return failf("scan host key of %s: %v", t.Upstream.Addr, err)
				}
				fmt.Fprintf(e.stdout, "scanned host key for %s: %s %s\n", name, k.Type(), sshkeys.Fingerprint(k))
			}
			old := "none"
			if ok, _, err := sshkeys.ParseAuthorizedKey(t.Upstream.HostKey); err == nil {
				old = ok.Type() + " " + sshkeys.Fingerprint(ok)
			}
			t.Upstream.HostKey = sshkeys.AuthorizedLine(k)
			if err := st.UpdateTarget(ctx, t); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "pinned host key for %s: %s %s (was %s)\n", name, k.Type(), sshkeys.Fingerprint(k), old)
			return nil
		}),
	}
	pin.Flags().StringVar(&pinFile, "host-key", "", "file with the target's public host key (ssh_host_*_key.pub or a known_hosts line)")
	pin.Flags().BoolVar(&pinScan, "scan-host-key", false, "connect to the upstream now and pin the host key it presents")
	pin.Flags().BoolVar(&pinCA, "host-ca", false, "drop the pinned key: verify the target's host certificate against the gate's host CA")
	pin.Flags().StringVar(&pinPrincipal, "host-principal", "", "with --host-ca: the name the host certificate must carry (default: the host of the address)")
	cmd.AddCommand(add, list, remove, show, pin)
	return cmd
}

func envExists(ctx context.Context, st store.Store, name string) error {
	es, err := st.ListEnvs(ctx)
	if err != nil {
		return err
	}
	for _, e := range es {
		if e.Name == name {
			return nil
		}
	}
	return failf("env %q not found", name)
}

// target checks the flags and builds the target (without its host key).
func (f *targetFlags) target(cmd *cobra.Command, name string) (gate.Target, error) {
	changed := cmd.Flags().Changed
	if err := checkTargetName(name); err != nil {
		return gate.Target{}, err
	}
	if f.env == "" {
		return gate.Target{}, usagef("target add %s: --env is required", name)
	}
	if err := checkName("env", f.env); err != nil {
		return gate.Target{}, err
	}
	if changed("login") || f.login != "" {
		if err := checkLogin("--login", f.login); err != nil {
			return gate.Target{}, err
		}
	}
	t := gate.Target{Name: name, Env: f.env, Login: f.login}
	isUp, isDocker, isKube := changed("upstream"), changed("docker"), f.kubernetes
	if n := btoi(isUp) + btoi(isDocker) + btoi(isKube); n != 1 {
		return gate.Target{}, usagef("target add %s: give exactly one of --upstream, --docker and --kubernetes", name)
	}
	if !isKube {
		for _, fl := range []string{"image", "namespace", "pod-template", "allow-host-access"} {
			if changed(fl) {
				return gate.Target{}, usagef("target add %s: --%s is for --kubernetes targets", name, fl)
			}
		}
	}
	dockerOnly := []string{"user", "cmd", "mount", "setenv", "memory", "cpus", "pids", "network", "per", "idle-ttl", "pool", "skip-image-check", "root-inside"}
	if isUp {
		for _, fl := range dockerOnly {
			if changed(fl) {
				return gate.Target{}, usagef("target add %s: --%s is for --docker targets", name, fl)
			}
		}
		if err := checkHostPort("--upstream", f.upstream); err != nil {
			return gate.Target{}, err
		}
		if f.login == "" {
			return gate.Target{}, usagef("target add %s: --login is required with --upstream", name)
		}
		pins := 0
		for _, fl := range []string{"host-key", "scan-host-key", "host-ca"} {
			if changed(fl) {
				pins++
			}
		}
		if pins > 1 || pins == 0 && !f.caHost {
			return gate.Target{}, usagef("target add %s: give exactly one of --host-key FILE and --scan-host-key, or --host-ca", name)
		}
		if f.hostCA && !f.caHost {
			return gate.Target{}, failf("target add %s: --host-ca: the gate has no host CA; run `sshgate ca init`", name)
		}
		if f.hostPrincipal != "" && pins == 1 && !f.hostCA {
			return gate.Target{}, usagef("target add %s: --host-principal is for targets verified through the host CA", name)
		}
		if f.hostPrincipal != "" && (strings.ContainsAny(f.hostPrincipal, ", \t\n") || len(f.hostPrincipal) > 255) {
			return gate.Target{}, usagef("--host-principal %q: want one host name", f.hostPrincipal)
		}
		switch f.auth {
		case "", gate.AuthKey:
		case gate.AuthCert:
			if !f.caUser {
				return gate.Target{}, failf("target add %s: --auth cert: the gate has no user CA; run `sshgate ca init`", name)
			}
		default:
			return gate.Target{}, usagef("--auth %q: want cert or key", f.auth)
		}
		if changed("host-key") && f.hostKeyFile == "" {
			return gate.Target{}, usagef("--host-key %q: want a file name", f.hostKeyFile)
		}
		t.Kind = gate.KindUpstream
		t.Upstream = &gate.UpstreamSpec{Addr: f.upstream, Auth: f.auth, HostPrincipal: f.hostPrincipal}
		return t, nil
	}
	for _, fl := range []string{"host-key", "scan-host-key", "host-ca", "host-principal", "auth"} {
		if changed(fl) {
			return gate.Target{}, usagef("target add %s: --%s is for --upstream targets", name, fl)
		}
	}
	if isKube {
		for _, fl := range []string{"mount", "network", "pids", "skip-image-check"} {
			if changed(fl) {
				return gate.Target{}, usagef("target add %s: --%s is for --docker targets", name, fl)
			}
		}
		k, err := f.kubeSpec()
		if err != nil {
			return gate.Target{}, err
		}
		t.Kind, t.Kubernetes = gate.KindKubernetes, k
		return t, nil
	}
	d, err := f.dockerSpec()
	if err != nil {
		return gate.Target{}, err
	}
	if f.rootInside {
		if f.user != "" && !container.IsRootUser(f.user) {
			return gate.Target{}, usagef("target add %s: --root-inside runs as root; --user %q says otherwise", name, f.user)
		}
		d.RootInside = true
	}
	t.Kind = gate.KindDocker
	t.Docker = d
	return t, nil
}

func (f *targetFlags) dockerSpec() (*gate.DockerSpec, error) {
	if strings.TrimSpace(f.image) == "" || strings.ContainsAny(f.image, " \t\n") {
		return nil, usagef("--docker %q: want an image reference such as alpine:3.20", f.image)
	}
	d := &gate.DockerSpec{Image: f.image, User: f.user, Cmd: f.cmd, Network: "none", Per: "connection"}
	if f.user != "" && (strings.ContainsAny(f.user, " \t\n") || strings.Count(f.user, ":") > 1 || strings.HasPrefix(f.user, ":") || strings.HasSuffix(f.user, ":")) {
		return nil, usagef("--user %q: want USER, UID or UID:GID", f.user)
	}
	for _, m := range f.mounts {
		if _, err := docker.ParseMount(m, docker.DefaultDenyMounts, nil); err != nil {
			return nil, usagef("--mount %q: %v", m, strings.TrimPrefix(err.Error(), fmt.Sprintf("mount %q: ", m)))
		}
		d.Mounts = append(d.Mounts, m)
	}
	for _, kv := range f.setenv {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\n") {
			return nil, usagef("--setenv %q: want KEY=VALUE", kv)
		}
		d.Env = append(d.Env, kv)
	}
	if f.memory != "" {
		n, err := parseSize("--memory", f.memory)
		if err != nil {
			return nil, err
		}
		if n < 6<<20 {
			return nil, usagef("--memory %q: at least 6m", f.memory)
		}
		d.Memory = n
	}
	if f.cpus != "" {
		c, err := strconv.ParseFloat(f.cpus, 64)
		if err != nil || !(c > 0) || c > 1024 {
			return nil, usagef("--cpus %q: want a number of CPUs such as 0.5 or 2", f.cpus)
		}
		d.NanoCPUs = int64(c * 1e9)
		if d.NanoCPUs < 1e7 {
			return nil, usagef("--cpus %q: at least 0.01", f.cpus)
		}
	}
	if f.pids < 0 {
		return nil, usagef("--pids %d: want a positive number", f.pids)
	}
	d.Pids = int64(f.pids)
	if f.network != "" {
		if f.network == "host" {
			return nil, usagef("--network %q: the host network is not allowed", f.network)
		}
		if !networkRE.MatchString(f.network) {
			return nil, usagef("--network %q: want none or a docker network name", f.network)
		}
		d.Network = f.network
	}
	switch f.per {
	case "", "connection":
	case "user":
		d.Per = "user"
	default:
		return nil, usagef("--per %q: want connection or user", f.per)
	}
	if f.ttl != "" {
		if d.Per != "user" {
			return nil, usagef("--idle-ttl %q: only with --per user", f.ttl)
		}
		if _, err := parseDuration("--idle-ttl", f.ttl); err != nil {
			return nil, err
		}
		d.IdleTTL = f.ttl
	}
	if f.pool < 0 || f.pool > 100 {
		return nil, usagef("--pool %d: want 0 to 100", f.pool)
	}
	d.Pool = f.pool
	return d, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

var k8sNamespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// kubeSpec checks the flags of a kubernetes target: those shared with
// docker targets are checked by dockerSpec's rules.
func (f *targetFlags) kubeSpec() (*gate.KubernetesSpec, error) {
	var tmpl *corev1.PodTemplateSpec
	if f.podTemplate != "" {
		data, err := os.ReadFile(f.podTemplate)
		if err != nil {
			return nil, usagef("--pod-template %s: %v", f.podTemplate, errors.Unwrap(err))
		}
		if tmpl, err = kube.ParsePodTemplate(data); err != nil {
			return nil, usagef("--pod-template %s: %v", f.podTemplate, err)
		}
		if f.kubeImage == "" {
			f.kubeImage = kube.TemplateImage(tmpl)
		}
	}
	if strings.TrimSpace(f.kubeImage) == "" || strings.ContainsAny(f.kubeImage, " \t\n") {
		return nil, usagef("--image %q: want an image reference such as busybox:1.36", f.kubeImage)
	}
	if f.rootInside && f.user != "" && !container.IsRootUser(f.user) {
		return nil, usagef("--root-inside runs as root; --user %q says otherwise", f.user)
	}
	if f.namespace != "" && !k8sNamespaceRE.MatchString(f.namespace) {
		return nil, usagef("--namespace %q: want a namespace name (lower-case letters, digits and '-')", f.namespace)
	}
	if f.user != "" {
		if _, err := strconv.Atoi(strings.SplitN(f.user, ":", 2)[0]); err != nil || strings.Count(f.user, ":") > 1 {
			return nil, usagef("--user %q: want UID or UID:GID (a pod's user is numeric)", f.user)
		}
	}
	saved := f.image
	f.image = f.kubeImage
	d, err := f.dockerSpec()
	f.image = saved
	if err != nil {
		return nil, err
	}
	per := d.Per
	if per == "connection" {
		per = ""
	}
	k := &gate.KubernetesSpec{Image: f.kubeImage, Namespace: f.namespace, User: d.User, Cmd: d.Cmd, Env: d.Env,
		Memory: d.Memory, NanoCPUs: d.NanoCPUs, Per: per, IdleTTL: d.IdleTTL, Pool: d.Pool,
		AllowHost: f.allowHost, RootInside: f.rootInside}
	if tmpl != nil {
		if err := kube.CheckTemplate(tmpl, kube.TemplateRules{Namespace: f.namespace, AllowHost: f.allowHost, RootInside: f.rootInside, User: f.user}); err != nil {
			return nil, usagef("--pod-template %s: %s", f.podTemplate, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		js, err := kube.TemplateJSON(tmpl)
		if err != nil {
			return nil, usagef("--pod-template %s: %v", f.podTemplate, err)
		}
		k.PodTemplate = js
	} else if f.allowHost {
		return nil, usagef("--allow-host-access is for --pod-template")
	}
	return k, nil
}

// errScanned stops the handshake once the host key is known.
var errScanned = errors.New("host key scanned")

// scanHostKey connects to addr and returns the host key the server presents,
// asking for ed25519 first. No authentication is attempted.
func scanHostKey(ctx context.Context, addr string) (ssh.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, ScanTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var got ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User:              "sshgate-scan",
		HostKeyAlgorithms: hostKeyPreference,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			got = key
			return errScanned
		},
		Timeout: ScanTimeout,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err == nil { // cannot happen: the callback always refuses
		go ssh.DiscardRequests(reqs)
		go func() {
			for ch := range chans {
				ch.Reject(ssh.Prohibited, "")
			}
		}()
		c.Close()
	}
	if got == nil {
		if err == nil {
			err = errors.New("no host key presented")
		}
		return nil, err
	}
	if err := sshkeys.CheckKeyStrength(got); err != nil {
		return nil, err
	}
	return got, nil
}

// readHostKeyFile reads a public host key from an ssh_host_*_key.pub file or
// known_hosts lines ("host keytype base64"); with several keys it picks by
// hostKeyPreference.
func readHostKeyFile(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fileErr(fmt.Sprintf("--host-key %q", path), err)
	}
	var keys []ssh.PublicKey
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := parseHostKeyLine(line)
		if err != nil {
			return nil, usagef("--host-key %q line %d: %v", path, n, err)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil && err != io.EOF {
		return nil, usagef("--host-key %q: %v", path, err)
	}
	if len(keys) == 0 {
		return nil, usagef("--host-key %q: no public key found", path)
	}
	best := keys[0]
	rank := func(k ssh.PublicKey) int {
		for i, a := range []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSA} {
			if k.Type() == a {
				return i
			}
		}
		return 99
	}
	for _, k := range keys[1:] {
		if rank(k) < rank(best) {
			best = k
		}
	}
	return best, nil
}

func parseHostKeyLine(line string) (ssh.PublicKey, error) {
	k, _, options, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil || len(options) > 0 {
		// known_hosts: "host[,host...] keytype base64 [comment]"
		marker, _, kk, _, _, kerr := ssh.ParseKnownHosts([]byte(line))
		if kerr != nil {
			return nil, errors.New("not a public key nor a known_hosts line")
		}
		if marker != "" {
			return nil, fmt.Errorf("@%s lines are not host keys", marker)
		}
		k = kk
	}
	if _, ok := k.(*ssh.Certificate); ok {
		return nil, errors.New("a certificate, not a host key")
	}
	if err := sshkeys.CheckKeyStrength(k); err != nil {
		return nil, err
	}
	return k, nil
}

func showTarget(w io.Writer, t gate.Target, defaults config.Docker, extra ...[2]string) error {
	tw := newTable(w, "FIELD", "VALUE")
	tw.row("name", t.Name)
	tw.row("env", t.Env)
	tw.row("kind", t.Kind)
	tw.row("login", orDash(t.Login))
	if u := t.Upstream; u != nil {
		tw.row("upstream", u.Addr)
		if u.HostKey != "" {
			if k, _, err := sshkeys.ParseAuthorizedKey(u.HostKey); err == nil {
				tw.row("host key", k.Type()+" "+sshkeys.Fingerprint(k))
			} else {
				tw.row("host key", "(unreadable) "+u.HostKey)
			}
		} else {
			tw.row("host key", "- (verified through the host CA, principal "+ca.HostPrincipal(u.HostPrincipal, u.Addr)+")")
		}
		if u.Auth != "" {
			tw.row("auth", u.Auth)
		}
	}
	if d := t.Docker; d != nil {
		tw.row("image", d.Image)
		tw.row("user", orDash(d.User))
		tw.row("cmd", orDash(strings.Join(d.Cmd, " ")))
		tw.row("mounts", orDash(strings.Join(d.Mounts, " ")))
		tw.row("env vars", orDash(strings.Join(d.Env, " ")))
		// Without limits of its own, a container gets the docker.* defaults.
		mem := "no limit (default, docker.default_memory)"
		if defaults.DefaultMemory > 0 {
			mem = formatSize(int64(defaults.DefaultMemory)) + " (default, docker.default_memory)"
		}
		cpus := "no limit"
		pids := strconv.FormatInt(defaults.DefaultPids, 10) + " (default, docker.default_pids)"
		if d.Memory > 0 {
			mem = formatSize(d.Memory)
		}
		if d.NanoCPUs > 0 {
			cpus = strconv.FormatFloat(float64(d.NanoCPUs)/1e9, 'f', -1, 64)
		}
		if d.Pids > 0 {
			pids = strconv.FormatInt(d.Pids, 10)
		}
		tw.row("memory", mem)
		tw.row("cpus", cpus)
		tw.row("pids", pids)
		tw.row("network", orDash(d.Network))
		tw.row("per", orDash(d.Per))
		tw.row("idle ttl", orDash(d.IdleTTL))
		tw.row("pool", strconv.Itoa(d.Pool))
		if d.RootInside {
			tw.row("root inside", "yes")
		}
	}
	if k := t.Kubernetes; k != nil {
		tw.row("image", k.Image)
		tw.row("namespace", orDash(k.Namespace))
		tw.row("user", orDash(k.User))
		tw.row("cmd", orDash(strings.Join(k.Cmd, " ")))
		tw.row("env vars", orDash(strings.Join(k.Env, " ")))
		mem, cpus := "default (kubernetes.default_memory)", "no limit"
		if k.Memory > 0 {
			mem = formatSize(k.Memory)
		}
		if k.NanoCPUs > 0 {
			cpus = strconv.FormatFloat(float64(k.NanoCPUs)/1e9, 'f', -1, 64)
		}
		tw.row("memory", mem)
		tw.row("cpus", cpus)
		tw.row("per", orDash(k.Per))
		tw.row("idle ttl", orDash(k.IdleTTL))
		tw.row("pool", strconv.Itoa(k.Pool))
		// Shown when set (the rows of older targets stay as they were).
		if k.PodTemplate != "" {
			tw.row("pod template", "yes")
		}
		if k.AllowHost {
			tw.row("host access", "yes")
		}
		if k.RootInside {
			tw.row("root inside", "yes")
		}
	}
	for _, r := range extra {
		tw.row(r[0], r[1])
	}
	tw.row("created", t.CreatedAt.Format(time.RFC3339))
	return tw.flush()
}

// checkHostCert tries, once, what each connection to a host-CA target will
// check: that addr presents a host certificate from the gate's host CA
// naming principal. It says what it found; the target is added either way
// (it may be set up after the gate), but a target that answers wrongly is
// named with what users will see and how to fix it.
func (e *env) checkHostCert(ctx context.Context, name, addr, principal string) {
	d, err := e.dataDir()
	if err != nil {
		return
	}
	own, err := app.LoadCA(d)
	if err != nil {
		return
	}
	cb, err := ca.NewTrust(d.CADir(), own, nil).HostKeyCallback(principal)
	if err != nil {
		return
	}
	fix := fmt.Sprintf("on the target: `sshgate ca sign-host --principal %s /etc/ssh/ssh_host_ed25519_key.pub`, then "+
		"`HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub` in its sshd_config", principal)
	err = probeHostKey(ctx, addr, ca.HostCertAlgorithms, cb)
	var hc *ca.HostCertError
	switch {
	case errors.Is(err, errScanned):
		fmt.Fprintf(e.stdout, "host key of %s: verified now: %s presents a host certificate from the gate's host CA for %q\n", name, addr, principal)
	case errors.As(err, &hc):
		fmt.Fprintf(e.stderr, "sshgate: warning: target %s presents %s (%s); users will be refused with \"presented an unexpected host key\" until it presents a host certificate for %q: %s\n",
			name, hc.Presented, hc.Reason, principal, fix)
	case err != nil && strings.Contains(err.Error(), "no common algorithm for host key"):
		fmt.Fprintf(e.stderr, "sshgate: warning: target %s answers at %s but presents no host certificate; users will be refused with \"presented an unexpected host key\" until it does: %s\n",
			name, addr, fix)
	default:
		fmt.Fprintf(e.stdout, "host key of %s: not checked now (%s does not answer: %v); each connection will check its host certificate for %q\n", name, addr, err, principal)
	}
}

// probeHostKey runs a handshake with addr up to its host key, offering
// algos, and returns what cb said of it (errScanned when cb accepted).
func probeHostKey(ctx context.Context, addr string, algos []string, cb ssh.HostKeyCallback) error {
	ctx, cancel := context.WithTimeout(ctx, ScanTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var verdict error
	cfg := &ssh.ClientConfig{
		User:              "sshgate-scan",
		HostKeyAlgorithms: algos,
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			if verdict = cb(host, remote, key); verdict == nil {
				verdict = errScanned
			}
			return verdict
		},
		Timeout: ScanTimeout,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err == nil { // cannot happen: the callback always refuses
		go ssh.DiscardRequests(reqs)
		go func() {
			for ch := range chans {
				ch.Reject(ssh.Prohibited, "")
			}
		}()
		c.Close()
	}
	if verdict != nil {
		return verdict
	}
	return err
}
