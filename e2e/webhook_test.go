package e2e_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/sshgate/sshgate/e2e/harness"
	"github.com/sshgate/sshgate/internal/webhook"
)

// hookServer is the operator's webhook service: an auth webhook that knows
// one password and one key, and a config webhook whose answer a test sets.
type hookServer struct {
	*httptest.Server
	user, password, pubkey string
	hang                   atomic.Bool // every call hangs until the client gives up
	hangConfig             atomic.Bool // config calls hang
	slowBody               atomic.Bool // replies start, then stall

	mu        sync.Mutex
	configRep string
	configReq []webhook.ConfigRequest
	authCalls int
}

const sensitiveToken = "tok-9f3e1c-sensitive"

func newHookServer(t *testing.T, user, password, pubkey string) *hookServer {
	f := strings.Fields(pubkey) // the key without its comment, as the gate sends it
	h := &hookServer{user: user, password: password, pubkey: f[0] + " " + f[1], configRep: `{}`}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if h.hang.Load() || h.hangConfig.Load() && strings.HasPrefix(r.URL.Path, "/config/") {
		<-r.Context().Done()
		return
	}
	if h.slowBody.Load() {
		w.WriteHeader(200)
		_, _ = io.WriteString(w, `{"success":`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/auth/password", "/auth/pubkey":
		var req webhook.AuthRequest
		if json.Unmarshal(body, &req) != nil {
			http.Error(w, "bad request", 400)
			return
		}
		h.mu.Lock()
		h.authCalls++
		h.mu.Unlock()
		pw, _ := base64.StdEncoding.DecodeString(req.PasswordBase64)
		ok := req.Username == h.user && req.ConnectionID != "" && strings.HasPrefix(req.ClientVersion, "SSH-2.0-OpenSSH") &&
			(r.URL.Path == "/auth/password" && string(pw) == h.password ||
				r.URL.Path == "/auth/pubkey" && req.PublicKey == h.pubkey)
		fmt.Fprintf(w, `{"success":%v,"authenticatedUsername":%q,
			"metadata":{"team":{"value":"ops","sensitive":false},"ticket":{"value":%q,"sensitive":true}},
			"environment":{"WEBHOOK_TEAM":{"value":"ops","sensitive":false},"WEBHOOK_TOKEN":{"value":%q,"sensitive":true}}}`,
			ok, req.Username, sensitiveToken, sensitiveToken)
	case "/config/config":
		var req webhook.ConfigRequest
		if json.Unmarshal(body, &req) != nil {
			http.Error(w, "bad request", 400)
			return
		}
		h.mu.Lock()
		h.configReq = append(h.configReq, req)
		rep := h.configRep
		h.mu.Unlock()
		_, _ = io.WriteString(w, rep)
	default:
		http.NotFound(w, r)
	}
}

func (h *hookServer) setConfig(rep string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.configRep = rep
}

func (h *hookServer) lastConfigRequest() webhook.ConfigRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.configReq) == 0 {
		return webhook.ConfigRequest{}
	}
	return h.configReq[len(h.configReq)-1]
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "sshgate.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestAuthWebhook: users the gate does not store log in through the auth
// webhook with a password (sshpass) and with a key, reach a real sshd
// target through their grants, and see the webhook's environment there.
// An unreachable or hanging webhook denies, promptly.
func TestAuthWebhook(t *testing.T) {
	gateOnly(t)
	harness.RequireTools(t, "sshpass", "/usr/sbin/sshd")
	key, pub := harness.Keygen(t, t.TempDir(), "id_carol")
	hooks := newHookServer(t, "carol", "hook-Passw0rd", pub)
	cfg := writeConfig(t, fmt.Sprintf(`
auth:
  webhook:
    url: %s/auth
    timeout: 2s
    retries: 1
    mode: fallback
`, hooks.URL))
	sshd := harness.StartSSHD(t, harness.SSHDOptions{Extra: []string{"AcceptEnv WEBHOOK_*"}})
	g := harness.StartGate(t, harness.GateOptions{Args: []string{"--config", cfg}})
	sshd.Authorize(t, g.GateKey(t))
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := g.AddUser(t, "alice")
	g.Admin(t, "grant", "alice", "--target", "web-1")

	carol := g.Client("carol", key)
	show := "echo team=$WEBHOOK_TEAM token=$WEBHOOK_TOKEN"

	// carol is unknown to the store and has no grant: authenticated, but
	// nothing to reach.
	r := harness.Run(carol.SSHTo("web-1", nil, "true"), nil, short)
	if r.Code == 0 || !strings.Contains(r.Stderr, `target "web-1" not found or not permitted`) {
		t.Fatalf("carol without grant: exit %d stderr %q", r.Code, r.Stderr)
	}
	oneLine(t, "no grant", r.Stderr)

	// A local account without credentials holds her grants; the webhook
	// still authenticates her (fallback mode: she has no stored key or password).
	g.Admin(t, "user", "add", "carol")
	g.Admin(t, "grant", "carol", "--target", "web-1")
	t.Run("pubkey", func(t *testing.T) {
		r := harness.MustRun(t, carol.SSHTo("web-1", nil, show), nil, short)
		if r.Stdout != "team=ops token="+sensitiveToken+"\n" {
			t.Errorf("stdout %q", r.Stdout)
		}
	})
	t.Run("password", func(t *testing.T) {
		r := harness.MustRun(t, carol.WithPassword("hook-Passw0rd").SSHTo("web-1", nil, show), nil, short)
		if r.Stdout != "team=ops token="+sensitiveToken+"\n" {
			t.Errorf("stdout %q", r.Stdout)
		}
		bad := harness.Run(carol.WithPassword("wrong").SSHTo("web-1", nil, "echo hi"), nil, short)
		if bad.Code != 255 || !strings.Contains(bad.Stderr, "Permission denied") || bad.Stdout != "" {
			t.Errorf("wrong password: exit %d stdout %q stderr %q", bad.Code, bad.Stdout, bad.Stderr)
		}
	})
	t.Run("other key", func(t *testing.T) {
		other, _ := harness.Keygen(t, t.TempDir(), "id_other")
		bad := harness.Run(carol.WithKey(other).SSHTo("web-1", nil, "echo hi"), nil, short)
		if bad.Code != 255 || !strings.Contains(bad.Stderr, "Permission denied") {
			t.Errorf("other key: exit %d stderr %q", bad.Code, bad.Stderr)
		}
	})
	t.Run("local users stay local", func(t *testing.T) {
		r := harness.MustRun(t, alice.SSHTo("web-1", nil, show), nil, short)
		if r.Stdout != "team= token=\n" {
			t.Errorf("alice got webhook env: %q", r.Stdout)
		}
	})
	for name, flag := range map[string]*atomic.Bool{"hanging webhook denies": &hooks.hang, "slow body denies": &hooks.slowBody} {
		t.Run(name, func(t *testing.T) {
			base := g.Stats(t)
			flag.Store(true)
			defer flag.Store(false)
			for _, c := range []*harness.Client{carol.WithPassword("hook-Passw0rd"), carol} {
				start := time.Now()
				bad := harness.Run(c.SSHTo("web-1", nil, "echo hi"), nil, short)
				if bad.Code != 255 || !strings.Contains(bad.Stderr, "Permission denied") || bad.Stdout != "" {
					t.Errorf("exit %d stdout %q stderr %q", bad.Code, bad.Stdout, bad.Stderr)
				}
				// The gate's budget is 2s per decision, retries included.
				if took := time.Since(start); took > 20*time.Second {
					t.Errorf("the webhook held the login for %s", took)
				}
			}
			// Nothing of the abandoned calls stays open in the gate.
			g.WaitBaseline(t, base, 0, 20*time.Second)
		})
	}
	// Secrets never reach the gate's log.
	for _, s := range []string{sensitiveToken, "hook-Passw0rd"} {
		if g.LogContains(s) {
			t.Errorf("gate log contains %q", s)
		}
	}
}

// TestConfigWebhook: the config webhook sends a webhook-authenticated user
// with no grants to a target it chooses, and overrides a docker target's
// container within config_webhook.allow; an out-of-bounds reply is refused
// with one line.
func TestConfigWebhook(t *testing.T) {
	gateOnly(t)
	harness.RequireTools(t, "sshpass", "/usr/sbin/sshd")
	key, pub := harness.Keygen(t, t.TempDir(), "id_dave")
	hooks := newHookServer(t, "dave", "dave-Passw0rd", pub)
	shared := t.TempDir() // a host directory the config webhook may mount
	if err := errors.Join(os.Chmod(shared, 0o755), os.WriteFile(filepath.Join(shared, "hello.txt"), []byte("shared-data\n"), 0o644)); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf(`
auth:
  webhook:
    url: %[1]s/auth
    mode: only
config_webhook:
  url: %[1]s/config
  timeout: 2s
  allow:
    images: ["%[2]s"]
    max_memory: 134217728
    max_pids: 200
    mount_sources: [%[3]s]
  containerssh_target: wh-box
`, hooks.URL, harness.TestImage, shared))
	harness.AgentBinary(t) // beside the gate binary, for the docker part
	sshd := harness.StartSSHD(t, harness.SSHDOptions{Extra: []string{"AcceptEnv WEBHOOK_*"}})
	g := harness.StartGate(t, harness.GateOptions{Args: []string{"--config", cfg}})
	sshd.Authorize(t, g.GateKey(t))
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "target", "add", "web-1", "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	dave := g.Client("dave", key)

	t.Run("no target chosen: grants apply", func(t *testing.T) {
		hooks.setConfig(`{}`)
		r := harness.Run(dave.SSHTo("web-1", nil, "true"), nil, short)
		if r.Code == 0 || !strings.Contains(r.Stderr, "not found or not permitted") {
			t.Errorf("exit %d stderr %q", r.Code, r.Stderr)
		}
	})
	t.Run("target chosen", func(t *testing.T) {
		hooks.setConfig(`{"target":"web-1","login":"root"}`)
		// No target in the username: the webhook's choice, not the gate's commands.
		r := harness.MustRun(t, dave.WithPassword("dave-Passw0rd").SSHTo("", nil, "echo on-$WEBHOOK_TEAM"), nil, short)
		if r.Stdout != "on-ops\n" {
			t.Errorf("stdout %q", r.Stdout)
		}
		req := hooks.lastConfigRequest()
		if req.AuthenticatedUsername != "dave" || req.Method != "password" || req.ConnectionID == "" || req.Metadata["team"].Value != "ops" {
			t.Errorf("config request %+v", req)
		}
		if _, leaked := req.Metadata["ticket"]; leaked {
			t.Error("sensitive metadata sent to the config webhook")
		}
	})
	t.Run("hanging config webhook refuses in time", func(t *testing.T) {
		hooks.setConfig(`{"target":"web-1"}`)
		hooks.hangConfig.Store(true)
		defer hooks.hangConfig.Store(false)
		start := time.Now()
		r := harness.Run(dave.SSHTo("", nil, "echo hi"), nil, short)
		if r.Code == 0 || r.Stdout != "" || !strings.Contains(r.Stderr, "the gate's configuration service did not allow this connection (ref ") {
			t.Errorf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		oneLine(t, "hang", r.Stderr)
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("a hanging config webhook held the session for %s", took)
		}
	})
	t.Run("webhook failure refuses with one line", func(t *testing.T) {
		hooks.setConfig(`{"target":"web-1","docker":{"privileged":true}}`)
		r := harness.Run(dave.SSHTo("", nil, "echo hi"), nil, short)
		if r.Code == 0 || r.Stdout != "" || !strings.Contains(r.Stderr, "the gate's configuration service did not allow this connection (ref ") {
			t.Errorf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		oneLine(t, "refused", r.Stderr)
		noGoError(t, "refused", r.Stderr)
	})

	t.Run("docker", func(t *testing.T) {
		harness.RequireDocker(t)
		g.Admin(t, "env", "add", "dev")
		box := "wh-box"
		g.Admin(t, "target", "add", box, "--env", "dev", "--login", "user", "--docker", harness.TestImage, "--user", "1000", "--memory", "64m")
		show := "echo var=$CFG_VAR team=$WEBHOOK_TEAM; cat /data/hello.txt; " + memLimitCmd

		hooks.setConfig(fmt.Sprintf(`{"target":%q,"docker":{"image":%q,"env":{"CFG_VAR":"from-config"},"memory":100663296,"pids":100,"mounts":[%q]}}`,
			box, harness.TestImage, shared+":/data:ro"))
		r := harness.Run(dave.SSHTo("", nil, show), nil, short)
		if strings.Contains(r.Stderr, "is not available on this gate") {
			t.Skipf("no docker backend: %s", r.Stderr)
		}
		if r.Code != 0 || r.Stdout != "var=from-config team=ops\nshared-data\n100663296\n" {
			t.Errorf("allowed override: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}

		for name, rep := range map[string]string{
			"image not allowed": fmt.Sprintf(`{"target":%q,"docker":{"image":"alpine:3.20"}}`, box),
			"memory too high":   fmt.Sprintf(`{"target":%q,"docker":{"memory":1073741824}}`, box),
			"host mount":        fmt.Sprintf(`{"target":%q,"docker":{"mounts":["/etc:/x:ro"]}}`, box),
			"dotdot mount":      fmt.Sprintf(`{"target":%q,"docker":{"mounts":[%q]}}`, box, shared+"/../..:/x"),
			"privileged":        fmt.Sprintf(`{"target":%q,"docker":{"privileged":true}}`, box),
		} {
			hooks.setConfig(rep)
			r := harness.Run(dave.SSHTo("", nil, "echo hi"), nil, short)
			if r.Code == 0 || r.Stdout != "" || !strings.Contains(r.Stderr, "the gate's configuration service did not allow this connection") {
				t.Errorf("%s: exit %d stdout %q stderr %q", name, r.Code, r.Stdout, r.Stderr)
			}
			oneLine(t, name, r.Stderr)
		}

		// A ContainerSSH config server's reply, as one written in Go against
		// Docker's own types marshals it: every field, most of them zero. It
		// names no target: containerssh_target sends every connection to box,
		// as ContainerSSH sends every connection to its one container.
		csshReply := func(c container.Config, h container.HostConfig) string {
			b, err := json.Marshal(map[string]any{
				"environment": map[string]any{"CSSH_ENV": map[string]any{"value": "from-env", "sensitive": false}},
				"config": map[string]any{"backend": "docker", "docker": map[string]any{
					"execution": map[string]any{"container": c, "host": h, "imagePullPolicy": "Never"}}},
			})
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		h := container.HostConfig{Binds: []string{shared + ":/data:ro"}}
		h.Memory = 100663296
		hooks.setConfig(csshReply(container.Config{Image: harness.TestImage, Env: []string{"CFG_VAR=cssh"}}, h))
		r = harness.Run(dave.SSHTo("", nil, "echo var=$CFG_VAR env=$CSSH_ENV; cat /data/hello.txt; "+memLimitCmd), nil, short)
		if r.Code != 0 || r.Stdout != "var=cssh env=from-env\nshared-data\n100663296\n" {
			t.Errorf("ContainerSSH reply: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		for name, rep := range map[string]string{
			"ContainerSSH privileged":   csshReply(container.Config{Image: harness.TestImage}, container.HostConfig{Privileged: true}),
			"ContainerSSH host network": csshReply(container.Config{Image: harness.TestImage}, container.HostConfig{NetworkMode: "host"}),
			"ContainerSSH image":        csshReply(container.Config{Image: "alpine:3.20"}, container.HostConfig{}),
			"ContainerSSH /etc bind":    csshReply(container.Config{Image: harness.TestImage}, container.HostConfig{Binds: []string{"/etc:/x:ro"}}),
		} {
			hooks.setConfig(rep)
			r := harness.Run(dave.SSHTo("", nil, "echo hi"), nil, short)
			if r.Code == 0 || r.Stdout != "" || !strings.Contains(r.Stderr, "the gate's configuration service did not allow this connection") {
				t.Errorf("%s: exit %d stdout %q stderr %q", name, r.Code, r.Stdout, r.Stderr)
			}
			oneLine(t, name, r.Stderr)
		}
		waitNoContainers(t, box, 30*time.Second)
	})
	if g.LogContains(sensitiveToken) {
		t.Error("gate log contains the sensitive token")
	}
}
