package obs

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/ssh"
)

func TestMetricsLintAndValues(t *testing.T) {
	m := NewMetrics(func() float64 { return 7 })
	m.ConnAccepted()
	m.ConnRejected("something unbounded")
	m.Handshake(true)
	m.AuthLog("publickey", nil)
	m.AuthLog("none", errors.New("no"))
	m.AuthLog("password", &ssh.PartialSuccessError{})
	m.AuthLog("gssapi-with-mic", errors.New("no"))
	m.SessionStarted()
	m.Bytes(10, 20)
	m.TargetOpened("docker", 300*time.Millisecond, nil)
	m.ContainerStarted(errors.New("boom"))
	problems, err := testutil.GatherAndLint(m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "sshgate_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
	for _, tc := range []struct {
		want float64
		got  float64
	}{
		{1, testutil.ToFloat64(m.connRejected.WithLabelValues(RejectPerSourceLimt))}, // unknown reason folded
		{0, testutil.ToFloat64(m.auth.WithLabelValues("none", "failed"))},
		{1, testutil.ToFloat64(m.auth.WithLabelValues("password", "partial"))},
		{1, testutil.ToFloat64(m.auth.WithLabelValues("other", "failed"))},
		{1, testutil.ToFloat64(m.sessionsActive)},
		{20, testutil.ToFloat64(m.bytes.WithLabelValues("out"))},
		{1, testutil.ToFloat64(m.containerFails)},
	} {
		if tc.got != tc.want {
			t.Errorf("got %v, want %v", tc.got, tc.want)
		}
	}
	var nilM *Metrics // records nothing, never panics
	nilM.SessionStarted()
	nilM.AuthLog("password", nil)
}

func TestHealth(t *testing.T) {
	m := NewMetrics(nil)
	draining, listening := false, true
	var pingErr error
	srv := httptest.NewServer(Handler(m, Health{
		Ping:      func(context.Context) error { return pingErr },
		Listening: func() bool { return listening },
		Draining:  func() bool { return draining },
	}))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name          string
		drain, listen bool
		ping          error
		code          int
		body          string
	}{
		{"ready", false, true, nil, 200, "ready"},
		{"draining", true, true, nil, 503, "draining"},
		{"not listening", false, false, nil, 503, "not listening"},
		{"store down", false, true, errors.New("database is locked"), 503, "store unreachable"},
	} {
		draining, listening, pingErr = tc.drain, tc.listen, tc.ping
		code, body := get("/readyz")
		if code != tc.code || !strings.Contains(body, tc.body) || strings.Contains(body, "locked") {
			t.Errorf("%s: /readyz = %d %q, want %d %q", tc.name, code, body, tc.code, tc.body)
		}
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "sshgate_audit_dropped_total 0") {
		t.Errorf("/metrics = %d %q", code, body)
	}
}
