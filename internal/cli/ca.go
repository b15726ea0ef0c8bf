package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/app"
	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/store"
)

// caCmd is `sshgate ca ...`: the gate's certificate authority (internal/ca).
func (e *env) caCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The gate's certificate authority: user and host certificates", Args: cobra.ArbitraryArgs, RunE: group}
	cmd.AddCommand(e.caInitCmd(), e.caShowCmd(), e.caSignHostCmd(), e.caSignUserCmd(), e.caTrustCmd(), e.caRevokeCmd(), e.caRevokedCmd())
	return cmd
}

// loadCA opens the CA of the data directory; no CA is exit 1.
func (e *env) loadCA() (*ca.CA, *datadir.Dir, error) {
	d, err := e.dataDir()
	if err != nil {
		return nil, nil, err
	}
	c, err := app.LoadCA(d)
	if errors.Is(err, ca.ErrNoCA) {
		return nil, nil, failf("no certificate authority in %s: run `sshgate ca init`", d.Path)
	}
	if err != nil {
		return nil, nil, failf("%v", err)
	}
	return c, d, nil
}

func (e *env) caInitCmd() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "init [--config FILE]",
		Short: "Create the user CA (targets trust it), the client CA (users' certificates) and the host CA (ed25519, DATA/ca), and certify the gate's host keys",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			cfg, err := app.LoadConfig(app.Options{ConfigFile: config})
			if err != nil {
				return usagef("%v", err)
			}
			d, err := e.dataDir()
			if err != nil {
				return err
			}
			if err := app.UseKeys(cfg, d); err != nil {
				return usagef("%v", err)
			}
			created, err := ca.InitWith(d.CADir(), app.CAKeyFiles(d))
			if err != nil {
				return err
			}
			for _, p := range created {
				fmt.Fprintf(e.stdout, "created %s\n", p)
			}
			if len(created) == 0 {
				fmt.Fprintf(e.stdout, "certificate authority already in %s: kept\n", d.CADir())
			}
			c, err := app.LoadCA(d)
			if err != nil {
				return err
			}
			keys, err := d.HostKeys(false)
			if err != nil {
				return err
			}
			principals := cfg.GateHostPrincipals()
			for _, k := range keys {
				path := d.HostKeyPath(ca.KeyKind(k.PublicKey())) + "-cert.pub"
				if _, renewed, err := c.GateHostCert(k.PublicKey(), path, principals); err != nil {
					return err
				} else if renewed {
					fmt.Fprintf(e.stdout, "signed the gate's host key: %s (principals %s)\n", path, strings.Join(principals, ","))
				}
			}
			fmt.Fprintf(e.stdout, "\nTargets' sshd_config: TrustedUserCAKeys FILE, FILE holding:\n  %s\n", ca.TrustedUserCAKeysLine(c.User.PublicKey()))
			fmt.Fprintf(e.stdout, "Users' known_hosts (the gate and targets' host certificates):\n  %s\n", ca.KnownHostsLine(c.Host.PublicKey(), ""))
			fmt.Fprintf(e.stdout, "Certificates for users (sshgate ca sign-user) come from the client CA, which only the gate trusts.\n")
			return nil
		}),
	}
	cmd.Flags().StringVar(&config, "config", "", "the gate's YAML configuration (for ca.host_principals / advertise / listen)")
	return cmd
}

func (e *env) caShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show user|host|client",
		Short: "Print the user CA as a TrustedUserCAKeys line (for targets), the host CA as an @cert-authority known_hosts line, or the client CA (signs `ca sign-user` certificates)",
		Args:  argsOf([]string{"user|host|client"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			which := args[0]
			if which != "user" && which != "host" && which != "client" {
				return usagef("ca show %q: want user, host or client", which)
			}
			c, _, err := e.loadCA()
			if err != nil {
				return err
			}
			switch {
			case which == "user" && c.User != nil:
				fmt.Fprintln(e.stdout, ca.TrustedUserCAKeysLine(c.User.PublicKey()))
			case which == "client" && c.Client != nil:
				fmt.Fprintln(e.stdout, sshkeys.AuthorizedLine(c.Client.PublicKey())+" sshgate-ca-client")
			case which == "host" && c.Host != nil:
				fmt.Fprintln(e.stdout, ca.KnownHostsLine(c.Host.PublicKey(), ""))
			default:
				return failf("no %s CA: run `sshgate ca init`", which)
			}
			return nil
		}),
	}
}

// parseTTL reads a validity: a Go duration (8h, 90m) or whole days/weeks (30d, 52w).
func parseTTL(flag, s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.Atoi(n)
			if err != nil || v <= 0 || v > 10*366 {
				return 0, usagef("%s %q: want a duration such as 8h, 30d or 52w", flag, s)
			}
			return time.Duration(v) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usagef("%s %q: want a duration such as 8h, 30d or 52w", flag, s)
	}
	return d, nil
}

// readKeyArg reads the public key file argument of a sign command; a bad
// file is a usage error naming the file and the problem.
func readKeyArg(what, path string) (ssh.PublicKey, string, error) {
	k, comment, err := ca.ReadPublicKeyFile(path)
	if isFileErr(err) {
		return nil, "", failf("%s: %v", what, err)
	}
	if err != nil {
		return nil, "", usagef("%s: %v", what, err)
	}
	if _, ok := k.(*ssh.Certificate); ok {
		return nil, "", usagef("%s: %s: a certificate; give the public key it certifies", what, path)
	}
	if err := sshkeys.CheckKeyStrength(k); err != nil {
		return nil, "", usagef("%s: %s: %v", what, path, err)
	}
	return k, comment, nil
}

func (e *env) caSignHostCmd() *cobra.Command {
	var principals, ttl, keyID string
	cmd := &cobra.Command{
		Use:   "sign-host --principal NAME[,NAME] [--ttl 52w] HOSTKEY.pub",
		Short: "Sign a host key with the host CA; writes HOSTKEY-cert.pub beside it, as ssh-keygen -s does",
		Args:  argsOf([]string{"HOSTKEY.pub"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			ps, err := splitPrincipals("--principal", principals)
			if err != nil {
				return err
			}
			d, err := parseTTL("--ttl", ttl)
			if err != nil {
				return err
			}
			k, _, err := readKeyArg("ca sign-host", args[0])
			if err != nil {
				return err
			}
			c, _, err := e.loadCA()
			if err != nil {
				return err
			}
			if keyID == "" {
				keyID = "sshgate host " + ps[0]
			}
			cert, err := c.SignHost(k, ps, keyID, d)
			if err != nil {
				return usagef("ca sign-host: %v", err)
			}
			out := ca.CertPath(args[0])
			if err := ca.WriteCert(out, cert, ""); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s: host certificate serial %d for %s, valid until %s\n", out, cert.Serial,
				strings.Join(ps, ","), time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339))
			return nil
		}),
	}
	cmd.Flags().StringVar(&principals, "principal", "", "host names the certificate is valid for, comma-separated (required)")
	cmd.Flags().StringVar(&ttl, "ttl", "52w", "validity, e.g. 90d or 52w")
	cmd.Flags().StringVar(&keyID, "key-id", "", "key id (default: sshgate host PRINCIPAL)")
	return cmd
}

func splitPrincipals(flag, s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, usagef("%s is required: the names the certificate is valid for", flag)
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" || strings.ContainsAny(p, " \t\n") || len(p) > 255 {
			return nil, usagef("%s %q: want NAME[,NAME...]", flag, s)
		}
		out = append(out, p)
	}
	return out, nil
}

func (e *env) caSignUserCmd() *cobra.Command {
	var ttl, keyID, sourceAddr, forceCmd string
	var noForwarding, noPTY, noAgent bool
	cmd := &cobra.Command{
		Use:   "sign-user USER KEY.pub [--ttl 8h] [--source-address CIDR,...] [--force-command CMD]",
		Short: "Issue a certificate from the client CA for gate user USER (principal USER); writes KEY-cert.pub beside the key",
		Args:  argsOf([]string{"USER", "KEY.pub"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			user := args[0]
			if err := checkName("user", user); err != nil {
				return err
			}
			d, err := parseTTL("--ttl", ttl)
			if err != nil {
				return err
			}
			opts := map[string]string{}
			if cmd.Flags().Changed("source-address") {
				if _, err := ca.ParseSourceAddress(sourceAddr); err != nil {
					return usagef("--source-address %q: %v", sourceAddr, err)
				}
				opts[ca.OptSourceAddress] = sourceAddr
			}
			if cmd.Flags().Changed("force-command") {
				if strings.TrimSpace(forceCmd) == "" {
					return usagef("--force-command: empty command")
				}
				opts[ca.OptForceCommand] = forceCmd
			}
			k, _, err := readKeyArg("ca sign-user", args[1])
			if err != nil {
				return err
			}
			c, _, err := e.loadCA()
			if err != nil {
				return err
			}
			if c.Client == nil {
				return failf("no client CA: run `sshgate ca init`")
			}
			st, err := e.store()
			if err != nil {
				return err
			}
			if _, err := st.GetUser(cmd.Context(), user); errors.Is(err, store.ErrNotFound) {
				return failf("ca sign-user: user %q not found (add it with `sshgate user add %s`)", user, user)
			} else if err != nil {
				return err
			}
			if keyID == "" {
				keyID = "sshgate user " + user
			}
			ext := map[string]string{}
			if !noPTY {
				ext[ca.ExtPermitPTY] = ""
			}
			if !noForwarding {
				ext[ca.ExtPermitPortForwarding] = ""
			}
			if !noAgent {
				ext[ca.ExtPermitAgentForwarding] = ""
			}
			cert, err := c.SignClient(ca.UserCert{Key: k, Principals: []string{user}, KeyID: keyID, TTL: d,
				Backdate: time.Minute, Extensions: ext, CriticalOptions: opts})
			if err != nil {
				return usagef("ca sign-user: %v", err)
			}
			out := ca.CertPath(args[1])
			if err := ca.WriteCert(out, cert, ""); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s: user certificate serial %d for %s, key id %q, valid until %s\n", out, cert.Serial,
				user, keyID, time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339))
			return nil
		}),
	}
	cmd.Flags().StringVar(&ttl, "ttl", "8h", "validity, e.g. 8h or 30d")
	cmd.Flags().StringVar(&keyID, "key-id", "", "key id (default: sshgate user USER)")
	cmd.Flags().StringVar(&sourceAddr, "source-address", "", "addresses/CIDR prefixes the certificate may be used from, comma-separated")
	cmd.Flags().StringVar(&forceCmd, "force-command", "", "command every session of this certificate runs instead of what it asks")
	cmd.Flags().BoolVar(&noForwarding, "no-port-forwarding", false, "leave out permit-port-forwarding: no forwarding, whatever the grants say")
	cmd.Flags().BoolVar(&noAgent, "no-agent-forwarding", false, "leave out permit-agent-forwarding: no agent forwarding, whatever the grants say")
	cmd.Flags().BoolVar(&noPTY, "no-pty", false, "leave out permit-pty: no PTY for sessions of this certificate")
	return cmd
}

func (e *env) caTrustCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "trust-user-ca FILE",
		Short: "Accept user certificates signed by the CA public key in FILE (sshd TrustedUserCAKeys format)",
		Args:  argsOf([]string{"FILE"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, comment, err := ca.ReadPublicKeyFile(args[0])
			if isFileErr(err) {
				return failf("ca trust-user-ca: %v", err)
			}
			if err != nil {
				return usagef("ca trust-user-ca: %v", err)
			}
			if err := ca.CheckCAKey(k); err != nil {
				return usagef("ca trust-user-ca: %s: %v", args[0], err)
			}
			d, err := e.dataDir()
			if err != nil {
				return err
			}
			added, err := ca.AppendTrusted(d.CADir(), k, comment)
			if err != nil {
				return err
			}
			if !added {
				fmt.Fprintf(e.stdout, "user CA %s is already trusted\n", sshkeys.Fingerprint(k))
				return nil
			}
			fmt.Fprintf(e.stdout, "trusted user CA %s %s (in %s)\n", k.Type(), sshkeys.Fingerprint(k), filepath.Join(d.CADir(), ca.TrustedFile))
			return nil
		}),
	}
}

func (e *env) caRevokeCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke SERIAL|KEYFILE",
		Short: "Refuse a certificate serial, or every certificate of (or signed by) the key in KEYFILE",
		Args:  argsOf([]string{"SERIAL|KEYFILE"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			arg := args[0]
			var entry, what string
			if n, err := strconv.ParseUint(arg, 10, 64); err == nil {
				entry, what = fmt.Sprintf("serial %d", n), fmt.Sprintf("certificate serial %d", n)
			} else if _, statErr := os.Stat(arg); statErr != nil && strings.Trim(arg, "0123456789") == "" {
				return usagef("ca revoke %q: a serial from 0 to %d", arg, uint64(1<<64-1))
			} else {
				k, _, err := ca.ReadPublicKeyFile(arg)
				if err != nil {
					return usagef("ca revoke: %v", err)
				}
				if cert, ok := k.(*ssh.Certificate); ok {
					k = cert.Key // a certificate file revokes the key it certifies
				}
				entry, what = "key "+sshkeys.Fingerprint(k), "key "+k.Type()+" "+sshkeys.Fingerprint(k)
			}
			d, err := e.dataDir()
			if err != nil {
				return err
			}
			comment := time.Now().UTC().Format(time.RFC3339)
			if reason != "" {
				comment += " " + reason
			}
			added, err := ca.AppendRevocation(d.CADir(), entry, comment)
			if err != nil {
				return err
			}
			if !added {
				fmt.Fprintf(e.stdout, "%s is already revoked\n", what)
				return nil
			}
			fmt.Fprintf(e.stdout, "revoked %s\n", what)
			return nil
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "a note kept beside the entry")
	return cmd
}

func (e *env) caRevokedCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoked",
		Short: "List revoked certificate serials and keys",
		Args:  argsOf(nil, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			d, err := e.dataDir()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(filepath.Join(d.CADir(), ca.RevokedFile))
			if err != nil && !os.IsNotExist(err) {
				return err
			}
			if _, err := ca.ParseRevocations(data); err != nil {
				return failf("%s: %v", filepath.Join(d.CADir(), ca.RevokedFile), err)
			}
			tw := newTable(e.stdout, "KIND", "VALUE", "NOTE")
			for _, line := range strings.Split(string(data), "\n") {
				entry, note, _ := strings.Cut(line, "#")
				f := strings.Fields(entry)
				if len(f) == 2 {
					tw.row(f[0], f[1], orDash(strings.TrimSpace(note)))
				}
			}
			return tw.flush()
		}),
	}
}

// readCAState tells target add whether the gate has a user CA and a host CA.
func (e *env) readCAState(f *targetFlags) error {
	d, err := e.dataDir()
	if err != nil {
		return err
	}
	c, err := app.LoadCA(d)
	if errors.Is(err, ca.ErrNoCA) {
		return nil
	}
	if err != nil {
		return failf("%v", err)
	}
	f.caUser, f.caHost = c.User != nil, c.Host != nil
	return nil
}

// unpinHostKey is `target pin-host-key NAME --host-ca`: the target's host
// key is no longer pinned but verified through the host CA.
func (e *env) unpinHostKey(cmd *cobra.Command, name string, alsoPin bool, principal string) error {
	if alsoPin {
		return usagef("target pin-host-key %s: give exactly one of --host-key FILE and --scan-host-key, or --host-ca", name)
	}
	if principal != "" && (strings.ContainsAny(principal, ", \t\n") || len(principal) > 255) {
		return usagef("--host-principal %q: want one host name", principal)
	}
	var f targetFlags
	if err := e.readCAState(&f); err != nil {
		return err
	}
	if !f.caHost {
		return failf("target pin-host-key %s: --host-ca: the gate has no host CA; run `sshgate ca init`", name)
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
	t.Upstream.HostKey, t.Upstream.HostPrincipal = "", principal
	if err := st.UpdateTarget(ctx, t); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "host key of %s: verified through the host CA (principal %q)\n", name, ca.HostPrincipal(principal, t.Upstream.Addr))
	return nil
}
