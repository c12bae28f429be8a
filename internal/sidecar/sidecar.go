// Package sidecar is `ward sidecar`, the mesh proxy beside one service.
// Inbound it speaks only mutual TLS 1.3, verifies the caller's SVID,
// authorizes each request against the AccessPolicies that target its
// service (default deny) and forwards to the app on loopback with the
// verified identity in X-Ward-Peer-Id. Outbound it is the app's HTTP proxy:
// the app calls http://<service>/..., the sidecar resolves the service,
// opens mutual TLS to it and checks that the server is that service.
// Services of protocol tcp are carried as opaque streams under the same
// identity checks (L4).
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/idtoken"
	"github.com/wardsec/ward/internal/mesh"
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/resource"
)

// Config configures a sidecar.
type Config struct {
	Service     string               // the service this sidecar fronts
	TrustDomain spiffeid.TrustDomain // of the mesh
	Listen      string               // inbound mTLS address
	// Inbound, when set, is the inbound listener, already bound, used in
	// place of Listen: a caller that must know the address before the
	// sidecar starts binds it first, with no window for another program to
	// take the port. The sidecar closes it, also when New fails.
	Inbound  net.Listener
	App      string // the app, on loopback
	Outbound string // the app's HTTP proxy (HTTP_PROXY), loopback; empty: none
	// Upstreams are local listeners that each carry everything to one
	// service: name -> listen address (gRPC clients and TCP use these).
	Upstreams  map[string]string
	ConfigFile string // resource YAML, reloaded on change
	// Initial, when ConfigFile is empty, is the first snapshot: resource
	// documents from the control plane (or its last good copy on disk).
	// Exactly one of ConfigFile and Initial must be set.
	Initial *Snapshot
	Admin   string // /metrics, /healthz; empty: none
	Source  *identity.Source
	Log     *slog.Logger
	Events  audit.Sink
	// Flows counts every request per edge (see package flows); nil: none.
	Flows *flows.Table
	// Limits on what is accepted; zero values take defaults.
	Limits Limits
	// Bodies buffers request bodies under one process-wide budget; nil: a
	// new one with proxy's defaults. Roles of one process share one.
	Bodies *proxy.Bodies
	// Resilience tunes outlier ejection, circuit breaking and retries
	// towards upstream services; zero values take defaults.
	Resilience Resilience
	// Registry serves /metrics; nil: a new one. Pass one to add metrics
	// of your own (the audit spool's).
	Registry *prometheus.Registry
}

// Resilience configures how the sidecar treats failing upstreams.
type Resilience = mesh.Resilience

// Limits bound the work one request may cause.
type Limits struct {
	pipeline.Limits     // headers, bodies, timeouts: as every role
	MaxConnsPerApp  int // connections to the app; default 512
}

func (l Limits) withDefaults() Limits {
	l.Limits = l.Limits.WithDefaults()
	if l.MaxConnsPerApp == 0 {
		l.MaxConnsPerApp = 512
	}
	return l
}

// Sidecar is the running proxy. Build it with New, run it with Run.
type Sidecar struct {
	cfg      Config
	id       spiffeid.ID
	lim      Limits
	bodies   *proxy.Bodies
	log      *slog.Logger
	conf     *resource.Config[*snapshot]
	metrics  *metrics
	registry *prometheus.Registry
	inbound  net.Listener
	outbound net.Listener
	ups      map[string]net.Listener
	admin    net.Listener
	app      *appForwarder
	mesh     *mesh.Client
	guard    *proxy.Guard
	idtokens *idtoken.Verifier
}

// New validates cfg, loads the resource file (or compiles the initial
// snapshot) and binds every listener, so
// that a bad flag or file fails at start. On error it releases what it opened.
func New(cfg Config) (_ *Sidecar, err error) {
	if cfg.Inbound != nil {
		defer func() {
			if err != nil {
				cfg.Inbound.Close() // ours from the call on, whatever happens
			}
		}()
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Events == nil {
		cfg.Events = audit.SlogSink{Log: cfg.Log}
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Source == nil {
		return nil, errors.New("sidecar needs an identity source")
	}
	id, err := spiffeid.FromSegments(cfg.TrustDomain, "svc", cfg.Service)
	if err != nil {
		return nil, fmt.Errorf("service name %q: %w", cfg.Service, err)
	}
	if err := requireLoopback("--app", cfg.App); err != nil {
		return nil, err
	}
	s := &Sidecar{cfg: cfg, id: id, lim: cfg.Limits.withDefaults(), log: cfg.Log, ups: map[string]net.Listener{}, registry: cfg.Registry}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.conf, err = newConfig(cfg, id.String()); err != nil {
		return nil, err
	}
	if _, ok := s.snap().services[cfg.Service]; !ok {
		return nil, fmt.Errorf("%s declares no Service named %q", s.conf.Load().Origin, cfg.Service)
	}
	s.metrics = newMetrics(s.registry)
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if s.bodies = cfg.Bodies; s.bodies == nil {
		s.bodies = proxy.NewBodies(proxy.BodyConfig{})
	}
	s.registry.MustRegister(bodyGauge(s.bodies))
	s.app = newAppForwarder(cfg.App, s.lim)
	s.guard = s.newGuard()
	s.idtokens = &idtoken.Verifier{Audience: id, Bundle: cfg.Source.Bundle, Revoked: cfg.Source.Revoked}
	s.mesh = mesh.New(mesh.Config{
		Source: cfg.Source, TrustDomain: cfg.TrustDomain, Resolve: s.endpoints,
		ConnectTimeout: s.lim.ConnectTimeout, RequestTimeout: s.lim.RequestTimeout,
		Resilience: cfg.Resilience, Log: cfg.Log,
	})

	if s.inbound = cfg.Inbound; s.inbound == nil {
		if s.inbound, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("inbound listen %s: %w", cfg.Listen, err)
		}
	}
	if cfg.Outbound != "" {
		if err := requireLoopback("--outbound", cfg.Outbound); err != nil {
			return nil, err
		}
		if s.outbound, err = net.Listen("tcp", cfg.Outbound); err != nil {
			return nil, fmt.Errorf("outbound listen %s: %w", cfg.Outbound, err)
		}
	}
	for name, addr := range cfg.Upstreams {
		if err := requireLoopback("--upstream "+name, addr); err != nil {
			return nil, err
		}
		if _, ok := s.snap().services[name]; !ok {
			return nil, fmt.Errorf("--upstream %s: %s declares no Service named %q", name, s.conf.Load().Origin, name)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("upstream %s listen %s: %w", name, addr, err)
		}
		s.ups[name] = l
	}
	if cfg.Admin != "" {
		if s.admin, err = net.Listen("tcp", cfg.Admin); err != nil {
			return nil, fmt.Errorf("admin listen %s: %w", cfg.Admin, err)
		}
	}
	return s, nil
}

// Apply validates and compiles snap and, if it is good, swaps it in
// atomically (requests in flight finish on the old one). A bad snapshot is
// refused with its error and the running configuration stays. Either way
// a config.reload audit event is emitted (allow with the changes, or deny
// with reason invalid_config and the error), with the version in its
// fields. Applying data identical to the running snapshot is a no-op that
// returns nil and emits nothing (ConfigVersion then reports snap's
// version). A sidecar started with a ConfigFile refuses snapshots.
func (s *Sidecar) Apply(snap Snapshot) error {
	err := s.conf.Apply(snap)
	if err == nil {
		s.mesh.Refresh()
	}
	return err
}

// ConfigVersion reports the version of the running snapshot (0 for a file).
func (s *Sidecar) ConfigVersion() int64 { return s.conf.Load().Version }

// requireLoopback refuses addresses that are not on this host's loopback:
// the app side of a sidecar is plaintext and must never leave the host.
func requireLoopback(flag, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s %q must be a loopback address: traffic between the sidecar and its app is not encrypted", flag, addr)
	}
	return nil
}

// InboundAddr, OutboundAddr and UpstreamAddr report bound addresses.
func (s *Sidecar) InboundAddr() string { return s.inbound.Addr().String() }

// OutboundAddr is the app's HTTP proxy address ("" when disabled).
func (s *Sidecar) OutboundAddr() string {
	if s.outbound == nil {
		return ""
	}
	return s.outbound.Addr().String()
}

// AdminAddr is the metrics listener's address ("" when disabled).
func (s *Sidecar) AdminAddr() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.Addr().String()
}

// UpstreamAddr is the local listener for one upstream service.
func (s *Sidecar) UpstreamAddr(name string) string { return s.ups[name].Addr().String() }

// Run serves until ctx ends, then shuts down gracefully.
func (s *Sidecar) Run(ctx context.Context) error {
	defer s.close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.conf.Run(ctx) })
	g.Go(func() error { return s.serveInbound(ctx) })
	if s.outbound != nil {
		g.Go(func() error { return s.serveHTTP(ctx, s.outbound, s.outboundHandler("")) })
	}
	for name, l := range s.ups {
		switch s.snap().services[name].Protocol {
		case "tcp":
			g.Go(func() error { return s.serveL4Upstream(ctx, name, l) })
		default:
			g.Go(func() error { return s.serveHTTP(ctx, l, s.outboundHandler(name)) })
		}
	}
	if s.admin != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		g.Go(func() error { return s.serveHTTP(ctx, s.admin, mux) })
	}
	s.log.Info("sidecar running", "id", s.id, "inbound", s.InboundAddr(), "app", s.cfg.App, "outbound", s.OutboundAddr())
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// serveHTTP serves a plaintext loopback listener (outbound proxy, upstream
// listeners, admin) until ctx ends.
func (s *Sidecar) serveHTTP(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    s.lim.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Protocols:         plainProtocols(),
	}
	return proxy.Serve(ctx, srv, l)
}

// plainProtocols accepts HTTP/1.1 and prior-knowledge HTTP/2 (h2c, what a
// gRPC client speaks) on loopback listeners.
func plainProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

func (s *Sidecar) close() {
	for _, l := range []net.Listener{s.inbound, s.outbound, s.admin} {
		if l != nil {
			l.Close()
		}
	}
	for _, l := range s.ups {
		l.Close()
	}
	if s.mesh != nil {
		s.mesh.Close()
	}
}
