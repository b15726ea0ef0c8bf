// Package app is the composition root: it turns configuration into complete
// components (store, backends, authentication, broker, the one
// ssh.ServerConfig, the SSH server), runs the gate and shuts it down in
// order.
//
// Must not import: cli agent store/storetest
package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/auth"
	"github.com/sshgate/sshgate/internal/broker"
	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/config"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshd"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/target"
	"github.com/sshgate/sshgate/internal/target/upstream"
)

// Options are what `sshgate serve` passes in from its flags.
type Options struct {
	DataDir    string // resolved data directory
	Listen     string // overrides the config's listen address when set
	ConfigFile string // optional YAML file
	Log        io.Writer
	// Ready, if set, is called with the listening address once the gate accepts connections.
	Ready func(addr net.Addr)

	MetricsListen string // overrides metrics.listen when set (serve --metrics-listen)
}

// ConfigError is a configuration problem: the CLI reports it and exits 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfig reads and validates the configuration for o.
func LoadConfig(o Options) (config.Config, error) {
	cfg, err := config.Check(o.ConfigFile, func(c *config.Config) {
		if o.Listen != "" {
			c.Listen = o.Listen
		}
		if o.MetricsListen != "" {
			c.Metrics.Listen = o.MetricsListen
		}
	})
	if err != nil {
		return cfg, &ConfigError{fmt.Errorf("invalid configuration:\n%w", err)}
	}
	return cfg, nil
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Serve runs the gate until ctx is cancelled, then drains live sessions for
// limits.shutdown_grace.
func Serve(ctx context.Context, o Options) error {
	cfg, err := LoadConfig(o)
	if err != nil {
		return err
	}
	log := newLogger(o.Log, cfg.Log)
	startPprof(log)
	tuneGC()
	dir, err := datadir.OpenForServe(o.DataDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := UseKeys(cfg, dir); err != nil { // keys.*: files outside the data directory
		return err
	}
	hostKeys, err := dir.HostKeys(cfg.SSH.ECDSAHostKey)
	if err != nil {
		return keyErr(err)
	}
	gateKey, err := dir.GateKey()
	if err != nil {
		return keyErr(err)
	}
	st, err := openStore(ctx, cfg, dir, log)
	if err != nil {
		return err // "open store ...: ..." already
	}
	defer st.Close()
	id := gateID(cfg, dir.Path)
	log = log.With("gate_id", id)
	ob, err := startObs(ctx, cfg, dir, st, id, log) // metrics, recordings, live sessions (obs.go)
	if err != nil {
		return err
	}
	defer ob.close()
	aud, closeAudit, err := startAudit(cfg, dir.Path, id, log)
	if err != nil {
		return err
	}
	defer closeAudit()
	ob.auditDropped(aud)

	cas, err := loadCA(cfg, dir, hostKeys, log)
	if err != nil {
		return err
	}
	defer cas.stop()
	uo := upstream.Options{GateKey: gateKey, Timeout: cfg.Limits.UpstreamTimeout.D(), Log: log}
	if cas.own {
		uo.CA, uo.InwardTTL = cas.trust, cfg.CA.InwardTTL.D()
	}
	up, err := upstream.New(uo)
	if err != nil {
		return err
	}
	backends := map[string]target.Backend{gate.KindUpstream: up}
	closeDocker, err := addDocker(ctx, cfg, dir, st, id, log, backends, ob.containerStarted)
	if err != nil {
		return err
	}
	closeKube := addKubernetes(ctx, cfg, st, id, log, backends, ob.containerStarted)
	closeBackends := sync.OnceFunc(func() { closeDocker(); closeKube() }) // by drain, after the sessions; else on the way out
	defer closeBackends()

	guard, throttle, second, err := setupDefence(ctx, cfg, dir, st, log)
	if err != nil {
		return err
	}
	hooks, err := newWebhooks(cfg, log)
	if err != nil {
		return err
	}
	defer hooks.close()

	ssoCfg, err := ssoConfig(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	au := auth.New(auth.Deps{Users: st, Log: log, SecondFactor: second, Throttle: throttle, Certs: cas.trust,
		Webhook: hooks.auth, WebhookMode: cfg.Auth.Webhook.Mode, SSO: ssoCfg})
	hub := newWatchHub(cfg, aud) // watch.go
	defer serveWatchSocket(dir.WatchSocket(), hub, log)()
	bd := broker.Deps{Config: cfg, Store: st, Backends: backends, Log: log, Hook: hooks.config,
		Observers: ob.brokerObservers(), Audit: aud, AuditFailClosed: cfg.Audit.FailClosed, LiveSessions: st}
	bd.Observers.Watch = hub
	if second != nil {
		bd.TOTP = second
	}
	if cas.ca != nil && cas.ca.Client != nil && cfg.Auth.OIDC.Enabled() {
		bd.SignClient, bd.CertTTL = clientSigner(cas.ca), cfg.Auth.OIDC.CertTTL.D()
	}
	if cfg.SSH.Jump {
		js, err := jumpSigners(hostKeys)
		if err != nil {
			return err
		}
		bd.Jump = broker.Jump{Hosts: ca.NewJumpHosts(cas.ca, js), ServerVersion: cfg.SSH.ServerVersion,
			Config: ssh.Config{KeyExchanges: cfg.SSH.KeyExchanges, Ciphers: cfg.SSH.Ciphers, MACs: cfg.SSH.MACs}}
	}
	br, err := broker.New(bd)
	if err != nil {
		return err
	}
	sc, err := serverConfig(cfg, hostKeys, cas.hostCerts, au, ob, aud)
	if err != nil {
		return err
	}
	srv := sshd.New(sc, sshd.Limits{
		LoginGrace:         cfg.Limits.LoginGrace.D(),
		MaxUnauthenticated: cfg.Limits.MaxUnauthenticated,
		MaxUnauthPerSource: cfg.Limits.MaxUnauthenticatedPerIP,
		Handshake:          cfg.Limits.Handshake.D(),
		InteractiveLogin:   interactiveLogin(cfg),
		Guard:              guard,
		Offer:              cfg.SSH.Offer,
		Proxy: sshd.Proxy{Trusted: cfg.SSH.ProxyProtocol.Prefixes(), Required: cfg.SSH.ProxyProtocol.HeaderRequired(),
			Timeout: cfg.SSH.ProxyProtocol.Timeout()},
	}, ob.metrics, br.Handle, log)
	if err := ob.listen(srv); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	log.Info("sshgate listening", "addr", ln.Addr().String(), "data", dir.Path,
		"host_key", ssh.FingerprintSHA256(hostKeys[0].PublicKey()))
	if users, err := st.ListUsers(ctx); err == nil && len(users) == 0 {
		if cfg.Log.Format == "json" {
			// No plain text inside a JSON log stream: one record instead.
			log.Info("no users yet: see the README's Quick start, or run `sshgate serve` without log.format json once to see the commands", "data", dir.Path)
		} else {
			firstRunHint(o.Log, dir.Path, ln.Addr())
		}
	}
	defer startGateRegistry(cfg, st, ob.live, ln.Addr(), log)() // the gates table: registered now, removed after the drain
	ob.ready()
	if o.Ready != nil {
		o.Ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	drain(srv, br, cfg.Limits.ShutdownGrace.D(), closeBackends, log)
	return nil
}

// drain is the graceful stop (SIGTERM, or the first Ctrl-C): the listener
// closes and /readyz fails at once (so a load balancer sends new users to
// another gate), every user in a PTY session is told the session ends
// within grace (limits.shutdown_grace), sessions run on until they end or
// the grace is over (then each is ended with one line on stderr and exit
// status 255, and the connections closed), and only then does the
// container lifecycle shut down, once: per-connection containers have gone
// with their sessions, and the per-user and pooled ones are the
// lifecycle's to remove or hand over to the other gates (its Close).
func drain(srv *sshd.Server, br *broker.Broker, grace time.Duration, closeBackends func(), log *slog.Logger) {
	start := time.Now()
	srv.StopAccepting()
	told := br.Drain(grace)
	log.Info("draining", "grace", grace, "pty_sessions_told", told)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.WaitIdle(sctx); err != nil {
		// Every session left is told why it ends, with an exit status, and
		// its client has a moment to read that and leave before the
		// connections are closed.
		ended := br.EndSessions(broker.DrainEndMessage, 5*time.Second)
		log.Warn("drain deadline reached: remaining sessions ended", "grace", grace, "sessions", ended)
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(cctx)
		ccancel()
	}
	_ = srv.Shutdown(sctx) // closes nothing when idle; stops the accept loop
	closeBackends()
	log.Info("stopped", "drain", time.Since(start).Round(time.Millisecond))
}

// serverConfig is the one ssh.ServerConfig of the gate, built whole before
// the accept loop copies it: algorithms, host keys (and their
// certificates), the authentication callbacks, and one AuthLogCallback that
// tells every observer of authentication attempts (metrics, audit; penalties
// and the login grace are the accept loop's own) in a fixed order.
func serverConfig(cfg config.Config, hostKeys []ssh.Signer, hostCerts []ssh.Signer, au *auth.Authenticator, ob *observability, aud *audit.Logger) (*ssh.ServerConfig, error) {
	sc := &ssh.ServerConfig{
		Config:        ssh.Config{KeyExchanges: cfg.SSH.KeyExchanges, Ciphers: cfg.SSH.Ciphers, MACs: cfg.SSH.MACs},
		MaxAuthTries:  cfg.Limits.MaxAuthTries,
		ServerVersion: cfg.SSH.ServerVersion,
	}
	for _, k := range hostKeys {
		k, err := sshkeys.HostSigner(k)
		if err != nil {
			return nil, err
		}
		sc.AddHostKey(k)
	}
	for _, c := range hostCerts {
		sc.AddHostKey(c)
	}
	au.Install(sc)
	if cfg.SSH.Banner != "" {
		b, err := os.ReadFile(cfg.SSH.Banner)
		if err != nil {
			return nil, &ConfigError{fmt.Errorf("ssh.banner: %w", err)}
		}
		banner := string(b)
		if banner != "" && !strings.HasSuffix(banner, "\n") {
			banner += "\n"
		}
		sc.BannerCallback = func(ssh.ConnMetadata) string { return banner }
	}
	sc.PasswordCallback = ob.honeypot(sc.PasswordCallback)
	observers := []func(ssh.ConnMetadata, string, error){
		func(_ ssh.ConnMetadata, method string, err error) { ob.metrics.AuthLog(method, err) },
		auditAuthFailure(aud),
	}
	sc.AuthLogCallback = func(conn ssh.ConnMetadata, method string, err error) {
		for _, o := range observers {
			o(conn, method, err)
		}
	}
	return sc, nil
}

// jumpSigners are the gate's host keys as the ssh -J inner connection
// presents them (certified per target when there is a host CA).
func jumpSigners(hostKeys []ssh.Signer) ([]ssh.Signer, error) {
	var out []ssh.Signer
	for _, k := range hostKeys {
		hs, err := sshkeys.HostSigner(k)
		if err != nil {
			return nil, err
		}
		out = append(out, hs)
	}
	return out, nil
}

// interactiveLogin is how long a login that waits on a person (a browser
// sign-in, a TOTP code) may take in all (0: neither is on).
func interactiveLogin(cfg config.Config) time.Duration {
	var d time.Duration
	if cfg.Auth.OIDC.Enabled() {
		d = cfg.Auth.OIDC.LoginTimeout.D()
	}
	if cfg.MFA.TOTP.Required != "never" {
		// a code prompt may come at the end of login_grace
		d = max(d, cfg.Limits.LoginGrace.D()+cfg.MFA.TOTP.CodeTimeout.D())
	}
	return d
}

// gateID names this gate, the same everywhere: container labels, live
// sessions, audit events, logs. It is audit.gate_id when set, else derived
// from the host name and the data directory: stable across restarts (so a
// gate finds its own containers and stale rows), distinct between gates on
// different hosts or data directories.
func gateID(cfg config.Config, dataDir string) string {
	if cfg.Audit.GateID != "" {
		return cfg.Audit.GateID
	}
	host, _ := os.Hostname()
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(host + "|" + abs))
	return hex.EncodeToString(sum[:6])
}

// firstRunHint tells an operator with an empty store how to get in.
func firstRunHint(w io.Writer, data string, addr net.Addr) {
	if w == nil {
		w = os.Stderr
	}
	_, port, _ := net.SplitHostPort(addr.String())
	self := "sshgate"
	if len(os.Args) > 0 && strings.Contains(os.Args[0], "/") {
		self = os.Args[0] // as invoked, e.g. bin/sshgate after `make run`
	}
	fmt.Fprintf(w, `
sshgate is running, and has no users yet. In another terminal (no key yet?
make one with: ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519):

  %[3]s --data %[1]s user add me
  %[3]s --data %[1]s key add me ~/.ssh/id_ed25519.pub
  %[3]s --data %[1]s env add dev
  %[3]s --data %[1]s target add box --env dev --upstream HOST:22 --login USER --scan-host-key
  %[3]s --data %[1]s grant me --env dev
  %[3]s --data %[1]s gate-key        # put this line in USER's ~/.ssh/authorized_keys on HOST

then connect:

  ssh -p %[2]s me+box@127.0.0.1        # straight into box
  ssh -p %[2]s me@127.0.0.1 ls         # what you may reach

`, data, port, self)
}

// gcPercent is the gate's GOGC unless the environment sets one. x/crypto
// allocates a fresh buffer for every packet it receives, so with Go's default
// (100) and a gate's small live heap the collector runs every few MiB relayed;
// measured here, 400 cuts the gate's CPU per relayed GiB by 15-20% for about
// 25 MiB more peak heap per bulk transfer. GOMEMLIMIT still caps memory.
const gcPercent = 400

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}
