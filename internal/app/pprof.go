package app

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// startPprof serves net/http/pprof on $SSHGATE_PPROF (a loopback address)
// when it is set, for profiling a running gate. Off by default.
func startPprof(log *slog.Logger) {
	addr := os.Getenv("SSHGATE_PPROF")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Warn("SSHGATE_PPROF must be a loopback HOST:PORT; profiling stays off", "value", addr)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/heap", pprof.Handler("heap").ServeHTTP)
	mux.HandleFunc("/debug/pprof/goroutine", pprof.Handler("goroutine").ServeHTTP)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("pprof listener", "err", err)
		return
	}
	log.Info("pprof listening", "addr", ln.Addr().String())
	go func() { _ = http.Serve(ln, mux) }()
}
