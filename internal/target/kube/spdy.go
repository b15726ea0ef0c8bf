package kube

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/sshgate/sshgate/internal/coalesce"
)

// The SPDY exec stream's connection to the API server, dialled here
// rather than by client-go's SPDY round tripper so that a coalescing
// writer sits between the SPDY framer and TLS. The framer (spdystream)
// writes each data frame as three writes (stream id, flags and length, the
// data), and over a bare TLS connection each is a TLS record of its own:
// two of 4 bytes for every 32 KiB of stdin, which the API server's proxy
// passes on record by record to the kubelet, and the kubelet to the
// runtime, each hop paying a read, a write and a seal for every one.
// Coalesced, the framer's writes leave together, with whatever else queued
// meanwhile. Where client-go's own dialling is needed (a proxy, a custom
// dialer) its round tripper is used as before.

// spdyPing is client-go's ping period for SPDY exec streams.
const spdyPing = 5 * time.Second

// spdyExecutor makes the SPDY executor of an exec at u.
func spdyExecutor(rc *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	if !ownDial(rc, u) {
		return remotecommand.NewSPDYExecutor(rc, "POST", u)
	}
	tc, err := rest.TLSConfigFor(rc)
	if err != nil {
		return nil, err
	}
	up := &spdyDialer{tls: tc}
	rt, err := rest.HTTPWrappersForConfig(rc, up)
	if err != nil {
		return nil, err
	}
	return remotecommand.NewSPDYExecutorForTransports(rt, up, "POST", u)
}

// ownDial: the gate can dial the API server itself (no proxy for u, no
// custom dialer or transport in rc).
func ownDial(rc *rest.Config, u *url.URL) bool {
	if rc.Dial != nil || rc.Transport != nil || rc.WrapTransport != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return false
	}
	proxy := http.ProxyFromEnvironment
	if rc.Proxy != nil {
		proxy = rc.Proxy
	}
	p, err := proxy(&http.Request{URL: u})
	return err == nil && p == nil
}

// spdyDialer is the round tripper and upgrader of one SPDY exec stream.
type spdyDialer struct {
	tls  *tls.Config
	conn net.Conn
}

func (d *spdyDialer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Add(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	req.Header.Add(httpstream.HeaderUpgrade, spdy.HeaderSpdy31)
	nc, err := d.dial(req.Context(), req.URL)
	if err != nil {
		return nil, err
	}
	c := coalesce.New(nc)
	if err := req.Write(c); err != nil {
		c.Close()
		return nil, err
	}
	// Nothing follows the answer before the gate opens a stream: the
	// reader's buffer holds no more than the answer.
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		c.Close()
		return nil, err
	}
	d.conn = c
	return resp, nil
}

func (d *spdyDialer) dial(ctx context.Context, u *url.URL) (net.Conn, error) {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	addr := net.JoinHostPort(host, port)
	if u.Scheme == "http" {
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", addr)
	}
	cfg := &tls.Config{}
	if d.tls != nil {
		cfg = d.tls.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"http/1.1"}
	td := tls.Dialer{Config: cfg}
	return td.DialContext(ctx, "tcp", addr)
}

// NewConnection checks the API server's answer and starts SPDY over the
// connection: what client-go's round tripper does, with its errors.
func (d *spdyDialer) NewConnection(resp *http.Response) (httpstream.Connection, error) {
	if d.conn == nil {
		return nil, errors.New("no connection to upgrade")
	}
	connection := strings.ToLower(resp.Header.Get(httpstream.HeaderConnection))
	upgrade := strings.ToLower(resp.Header.Get(httpstream.HeaderUpgrade))
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.Contains(connection, "upgrade") || !strings.Contains(upgrade, strings.ToLower(spdy.HeaderSpdy31)) {
		defer resp.Body.Close()
		d.conn.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return nil, errors.New("unable to upgrade connection: unable to read error from server response")
		}
		var st metav1.Status
		if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
			return nil, &apierrors.StatusError{ErrStatus: st}
		}
		return nil, fmt.Errorf("unable to upgrade connection: %s", strings.TrimSpace(string(body)))
	}
	return spdy.NewClientConnectionWithPings(d.conn, spdyPing)
}
