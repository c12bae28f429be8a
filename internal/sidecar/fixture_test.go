package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/sidecar"
	"github.com/wardsec/ward/internal/testport"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// mesh is a Ward server plus sidecars, all in this process on loopback.
type mesh struct {
	t        testing.TB
	srv      *control.Server
	operator *control.Client
	config   string // resource file shared by the sidecars
	ctx      context.Context
	wg       sync.WaitGroup
}

func newMesh(t testing.TB) *mesh { t.Helper(); return newMeshTTL(t, 0) }

// newMeshTTL starts a mesh whose SVIDs live ttl (0: the default hour).
func newMeshTTL(t testing.TB, ttl time.Duration) *mesh {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	srv, err := control.NewServer(ctx, control.ServerConfig{
		DataDir: filepath.Join(dir, "server"), TrustDomain: td.Name(),
		Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", Log: quiet(), SVIDTTL: ttl,
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &mesh{t: t, srv: srv, ctx: ctx, config: filepath.Join(dir, "mesh.yaml")}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); m.wg.Wait(); srv.Close() })
	cred, err := control.LoadCredential(filepath.Join(dir, "server", control.FileOperator))
	if err != nil {
		t.Fatal(err)
	}
	if m.operator, err = control.NewClient(srv.URL(), srv.CA.Bundle(), cred); err != nil {
		t.Fatal(err)
	}
	return m
}

// freeAddr reserves a loopback port.
func freeAddr(t testing.TB) string {
	t.Helper()
	return testport.Addr(t)
}

func (m *mesh) writeConfig(yaml string) {
	m.t.Helper()
	if err := os.WriteFile(m.config, []byte(yaml), 0o644); err != nil {
		m.t.Fatal(err)
	}
}

// source enrolls a workload identity through the real API.
func (m *mesh) source(name string) *identity.Source {
	m.t.Helper()
	src := controltest.Enroll(m.t, m.srv, spiffeid.RequireFromSegments(td, "svc", name))
	m.wg.Add(1)
	go func() { defer m.wg.Done(); _ = src.Run(m.ctx) }()
	return src
}

// node is one service: its app, its sidecar, its identity.
type node struct {
	stop   func() // stops the sidecar and waits for it
	name   string
	src    *identity.Source
	sc     *sidecar.Sidecar
	app    *recorder
	events *audit.Recorder
}

// sidecar starts a sidecar for name in front of app at inbound address listen.
func (m *mesh) sidecar(name, listen string, app *recorder, upstreams map[string]string) *node {
	m.t.Helper()
	return m.sidecarWith(name, listen, app, upstreams, nil)
}

func (m *mesh) sidecarWith(name, listen string, app *recorder, upstreams map[string]string, mod func(*sidecar.Config)) *node {
	m.t.Helper()
	n := &node{name: name, src: m.source(name), app: app, events: &audit.Recorder{}}
	cfg := sidecar.Config{
		Service: name, TrustDomain: td, Listen: listen, App: app.addr, Outbound: "127.0.0.1:0",
		Upstreams: upstreams, ConfigFile: m.config, Source: n.src, Log: quiet(), Events: n.events,
	}
	if mod != nil {
		mod(&cfg)
	}
	var err error
	if n.sc, err = sidecar.New(cfg); err != nil {
		m.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(m.ctx)
	done := make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(done)
		if err := n.sc.Run(ctx); err != nil {
			m.t.Errorf("sidecar %s: %v", name, err)
		}
	}()
	n.stop = func() { cancel(); <-done }
	return n
}

// outbound returns an HTTP client that uses n's sidecar as its proxy, the
// way an app with HTTP_PROXY does.
func (n *node) outbound() *http.Client {
	proxy := &url.URL{Scheme: "http", Host: n.sc.OutboundAddr()}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
}

// recorder is a test app that records every request it receives.
type recorder struct {
	addr string
	mu   sync.Mutex
	seen []*http.Request
	srv  *http.Server
}

func newRecorder(t testing.TB, h http.HandlerFunc) *recorder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{addr: l.Addr().String()}
	if h == nil {
		h = func(w http.ResponseWriter, req *http.Request) {
			fmt.Fprintf(w, "app saw %s %s from %s", req.Method, req.URL.Path, req.Header.Get("X-Ward-Peer-Id"))
		}
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	r.srv = &http.Server{Protocols: p, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(strings.NewReader(string(body)))
		r.mu.Lock()
		r.seen = append(r.seen, req)
		r.mu.Unlock()
		h(w, req)
	})}
	go func() { _ = r.srv.Serve(l) }()
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (r *recorder) last() *http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		return nil
	}
	return r.seen[len(r.seen)-1]
}
