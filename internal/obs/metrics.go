// Package obs is the gate's observability: the Prometheus metrics (on an
// own registry, never the global one) and the HTTP handler that serves them
// with the health checks (/metrics, /healthz, /readyz). Labels are bounded:
// never a user, an address or a target name.
//
// Must not import: any project package
package obs

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/crypto/ssh"
)

// Connection rejection reasons (label values of sshgate_sshd_connections_rejected_total).
const (
	RejectDraining      = "draining"
	RejectUnauthLimit   = "unauthenticated_limit"
	RejectPerSourceLimt = "per_source_limit"
	RejectBanned        = "banned"
	// PROXY protocol (sshd/proxy.go): a header from a source not in
	// ssh.proxy_protocol.trusted, none from a trusted one that must send
	// one, or a malformed or late one.
	RejectProxyUntrusted = "proxy_untrusted"
	RejectProxyMissing   = "proxy_missing"
	RejectProxyInvalid   = "proxy_invalid"
)

var (
	authMethods  = []string{"publickey", "password", "keyboard-interactive", "none", "other"}
	authResults  = []string{"ok", "partial", "failed"}
	backends     = []string{"upstream", "docker", "other"}
	rejectReason = []string{RejectDraining, RejectUnauthLimit, RejectBanned, RejectProxyUntrusted, RejectProxyMissing, RejectProxyInvalid, RejectPerSourceLimt} // unknown: the last
)

// Metrics are the gate's metrics. Methods are safe for concurrent use; a
// nil *Metrics records nothing.
type Metrics struct {
	Registry *prometheus.Registry

	connAccepted    prometheus.Counter
	connRejected    *prometheus.CounterVec
	connEvicted     *prometheus.CounterVec
	handshakes      *prometheus.CounterVec
	auth            *prometheus.CounterVec
	sessionsActive  prometheus.Gauge
	sessions        prometheus.Counter
	bytes           *prometheus.CounterVec
	targetOpen      *prometheus.HistogramVec
	containerStarts prometheus.Counter
	containerFails  prometheus.Counter
	recordingErrors prometheus.Counter
	sessionsKilled  prometheus.Counter
}

// NewMetrics makes the metrics on a new registry (with the Go runtime and
// process collectors). auditDropped, if not nil, is read at each scrape for
// sshgate_audit_dropped_total (events a fail-open audit sink could not take).
func NewMetrics(auditDropped func() float64) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		connAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sshgate_sshd_connections_accepted_total",
			Help: "TCP connections taken on for the SSH handshake (not rejected at once).",
		}),
		connRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sshgate_sshd_connections_rejected_total",
			Help: "TCP connections closed at once, by reason.",
		}, []string{"reason"}),
		connEvicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sshgate_sshd_connections_evicted_total",
			Help: "Connections still authenticating closed to make room for a new one, by the limit that was full.",
		}, []string{"reason"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sshgate_sshd_handshakes_total",
			Help: "SSH handshakes (key exchange and authentication) by result: ok or failed.",
		}, []string{"result"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sshgate_auth_attempts_total",
			Help: "Authentication attempts by method and result (ok, partial: a further factor is needed, failed).",
		}, []string{"method", "result"}),
		sessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sshgate_broker_sessions_active",
			Help: "Session channels relayed to a target now.",
		}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sshgate_broker_sessions_total",
			Help: "Session channels relayed to a target since the start.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sshgate_relay_data_bytes_total",
			Help: "Channel data relayed, by direction: in (user to target) or out (target to user). Counted when a channel ends.",
		}, []string{"direction"}),
		targetOpen: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sshgate_target_open_duration_seconds",
			Help:    "Time to open a target (start a container if needed, connect, log in), by backend and result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"backend", "result"}),
		containerStarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sshgate_docker_container_starts_total",
			Help: "Containers the docker backend started (whether or not they came up).",
		}),
		containerFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sshgate_docker_container_start_failures_total",
			Help: "Container starts that failed (engine error, or the agent never connected).",
		}),
		recordingErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sshgate_recording_errors_total",
			Help: "Session recordings that could not be created or written.",
		}),
		sessionsKilled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sshgate_broker_sessions_killed_total",
			Help: "Sessions ended by `sshgate sessions kill` or a fail-closed recording.",
		}),
	}
	if auditDropped == nil {
		auditDropped = func() float64 { return 0 }
	}
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.connAccepted, m.connRejected, m.connEvicted, m.handshakes, m.auth, m.sessionsActive, m.sessions, m.bytes,
		m.targetOpen, m.containerStarts, m.containerFails, m.recordingErrors, m.sessionsKilled,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sshgate_audit_dropped_total",
			Help: "Audit events dropped by a failing sink under fail-open.",
		}, auditDropped),
	)
	// Every series exists from the start, at zero.
	for _, r := range rejectReason {
		m.connRejected.WithLabelValues(r)
	}
	for _, r := range []string{RejectUnauthLimit, RejectPerSourceLimt} {
		m.connEvicted.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "failed"} {
		m.handshakes.WithLabelValues(r)
	}
	for _, a := range authMethods {
		for _, r := range authResults {
			m.auth.WithLabelValues(a, r)
		}
	}
	for _, d := range []string{"in", "out"} {
		m.bytes.WithLabelValues(d)
	}
	for _, b := range backends {
		for _, r := range []string{"ok", "error"} {
			m.targetOpen.WithLabelValues(b, r)
		}
	}
	return m
}

func oneOf(v string, allowed []string) string {
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	return allowed[len(allowed)-1]
}

// ConnAccepted counts an accepted TCP connection.
func (m *Metrics) ConnAccepted() {
	if m != nil {
		m.connAccepted.Inc()
	}
}

// ConnRejected counts a connection closed at once (Reject* reasons).
func (m *Metrics) ConnRejected(reason string) {
	if m != nil {
		m.connRejected.WithLabelValues(oneOf(reason, rejectReason)).Inc()
	}
}

// ConnEvicted counts a connection still authenticating that was closed to
// make room (reason: RejectUnauthLimit or RejectPerSourceLimt).
func (m *Metrics) ConnEvicted(reason string) {
	if m != nil {
		m.connEvicted.WithLabelValues(oneOf(reason, []string{RejectUnauthLimit, RejectPerSourceLimt})).Inc()
	}
}

// Handshake counts a finished handshake.
func (m *Metrics) Handshake(ok bool) {
	if m == nil {
		return
	}
	r := "failed"
	if ok {
		r = "ok"
	}
	m.handshakes.WithLabelValues(r).Inc()
}

// AuthLog counts one authentication attempt; it has the shape of
// ssh.ServerConfig.AuthLogCallback's arguments. The "none" probe every
// client starts with is not counted when it fails.
func (m *Metrics) AuthLog(method string, err error) {
	if m == nil {
		return
	}
	res := "ok"
	var pse *ssh.PartialSuccessError
	switch {
	case err == nil:
	case errors.As(err, &pse):
		res = "partial"
	default:
		if method == "none" {
			return
		}
		res = "failed"
	}
	m.auth.WithLabelValues(oneOf(method, authMethods), res).Inc()
}

// SessionStarted and SessionEnded track the sessions gauge.
func (m *Metrics) SessionStarted() {
	if m != nil {
		m.sessionsActive.Inc()
		m.sessions.Inc()
	}
}

func (m *Metrics) SessionEnded() {
	if m != nil {
		m.sessionsActive.Dec()
	}
}

// SessionKilled counts a session ended by the gate.
func (m *Metrics) SessionKilled() {
	if m != nil {
		m.sessionsKilled.Inc()
	}
}

// Bytes adds a finished channel's data: in (user to target), out.
func (m *Metrics) Bytes(in, out int64) {
	if m == nil {
		return
	}
	m.bytes.WithLabelValues("in").Add(float64(max(in, 0)))
	m.bytes.WithLabelValues("out").Add(float64(max(out, 0)))
}

// TargetOpened observes the time a target took to open.
func (m *Metrics) TargetOpened(backend string, d time.Duration, err error) {
	if m == nil {
		return
	}
	res := "ok"
	if err != nil {
		res = "error"
	}
	m.targetOpen.WithLabelValues(oneOf(backend, backends), res).Observe(d.Seconds())
}

// ContainerStarted counts a container start and, with err, its failure.
func (m *Metrics) ContainerStarted(err error) {
	if m == nil {
		return
	}
	m.containerStarts.Inc()
	if err != nil {
		m.containerFails.Inc()
	}
}

// RecordingError counts a recording that failed.
func (m *Metrics) RecordingError() {
	if m != nil {
		m.recordingErrors.Inc()
	}
}

// Health are the readiness checks. Nil funcs pass.
type Health struct {
	Ping      func(ctx context.Context) error // the store answers
	Listening func() bool                     // the SSH listener accepts
	Draining  func() bool                     // shutdown has begun
	// OnFail, if set, is told why a check failed (for the log).
	OnFail func(check string, err error)
}

// Handler serves /metrics (m's registry), /healthz (200 while the process
// serves HTTP) and /readyz (200 when the store answers, the SSH listener is
// up and the gate is not draining; 503 naming the failed check otherwise).
func Handler(m *Metrics, h Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fail := func(check, msg string, err error) {
			if h.OnFail != nil {
				h.OnFail(check, err)
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + msg + "\n"))
		}
		if h.Draining != nil && h.Draining() {
			fail("draining", "draining", nil)
			return
		}
		if h.Listening != nil && !h.Listening() {
			fail("listening", "not listening", nil)
			return
		}
		if h.Ping != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := h.Ping(ctx); err != nil {
				fail("store", "store unreachable", err)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
