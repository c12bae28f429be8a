// Package gateway is `ward gateway`, the edge proxy: the one guarded front
// door of the mesh. It terminates public TLS, rejects ambiguous HTTP/1.x
// framing before net/http parses it, matches the request to a Route,
// identifies the application (API key) and the user (OIDC/JWT bearer token
// or client certificate; anonymous callers get a stable anonymous id),
// authorizes with the same policy engine the sidecars use, limits each
// caller (GCRA, in process or shared through Redis), and forwards into the
// mesh over mutual TLS with its own SVID, carrying the verified identity in
// a short-lived token signed by Ward instead of the caller's credentials.
// Every transaction leaves an access record.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/mesh"
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/ratelimit"
	"github.com/wardsec/ward/internal/resource"
)

// Config configures a gateway.
type Config struct {
	// Name makes the gateway's identity spiffe://<trust domain>/gateway/<name>.
	Name        string
	TrustDomain spiffeid.TrustDomain
	// Listen is the HTTPS address; HTTPListen, if set, a plain HTTP address
	// that only redirects (see RedirectHandler).
	Listen     string
	HTTPListen string
	// TLS is the edge TLS configuration (certificates, versions, suites;
	// see package edgetls). Without NextProtos: h2 and http/1.1.
	TLS *tls.Config
	// RedirectHandler serves HTTPListen; required with it.
	RedirectHandler http.Handler
	// ConfigFile is the resource YAML: Routes, Issuers, Services,
	// AccessPolicies. It is re-read when it changes.
	ConfigFile string
	// Initial, when ConfigFile is empty, is the first snapshot: resource
	// documents from the control plane (or its last good copy on disk).
	// Exactly one of ConfigFile and Initial must be set.
	Initial *Snapshot
	// Admin serves /metrics and /healthz; empty: none.
	Admin string
	// Source is the gateway's workload identity (mesh client certificate,
	// identity-token signing key).
	Source *identity.Source
	// APIKeys looks up API keys by prefix.
	APIKeys authn.APIKeyStore
	// Limiter counts requests for rate limits; nil: an in-process limiter.
	// Use a ratelimit.Redis to share limits between gateway replicas.
	Limiter ratelimit.Limiter
	// ConnRate limits how often one source may open connections; zero Rate:
	// 100/s with a burst of 200.
	ConnRate ratelimit.Limit
	// AnonymousSecret keys anonymous ids (HMAC); replicas that must give a
	// caller the same id share it. Empty: random per process.
	AnonymousSecret []byte
	// IssuerClient fetches OIDC discovery documents and JWKS; nil: default.
	IssuerClient *http.Client
	// TokenTTL is the lifetime of the identity tokens sent upstream;
	// default 2 minutes.
	TokenTTL time.Duration
	Limits   Limits
	// Bodies buffers request bodies under one process-wide budget; nil: a
	// new one with proxy's defaults. Roles of one process share one.
	Bodies *proxy.Bodies
	// Resilience tunes ejection, breaking and retries towards services.
	Resilience mesh.Resilience
	Events     audit.Sink
	// Flows counts every request per edge (see package flows); nil: none.
	Flows *flows.Table
	Log   *slog.Logger
	// Registry serves /metrics; nil: a new one. Pass one to add metrics
	// of your own (the audit spool's).
	Registry *prometheus.Registry
}

// Limits bound the work one request or client may cause.
type Limits struct {
	pipeline.Limits               // headers, bodies, timeouts: as every role
	MaxConns        int           // open client connections; default 10,000
	MaxPerSource    int           // concurrent requests per source network; default 64
	ReadTimeout     time.Duration // whole request incl. body; default 60s
	IdleTimeout     time.Duration // default 120s
}

func (l Limits) withDefaults() Limits {
	l.Limits = l.Limits.WithDefaults()
	if l.MaxPerSource == 0 {
		l.MaxPerSource = proxy.DefaultMaxPerSource
	}
	if l.MaxConns == 0 {
		l.MaxConns = 10_000
	}
	if l.ReadTimeout == 0 {
		l.ReadTimeout = 60 * time.Second
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = 120 * time.Second
	}
	return l
}

const handshakeTimeout = 10 * time.Second

// Gateway is the running edge proxy. Build it with New, run it with Run.
type Gateway struct {
	cfg      Config
	id       spiffeid.ID
	lim      Limits
	log      *slog.Logger
	conf     *resource.Config[*snapshot]
	mesh     *mesh.Client
	keys     *authn.APIKeys
	limiter  ratelimit.Limiter
	local    *ratelimit.Local // connection rates, and requests without Redis
	guard    *proxy.Guard
	tokens   tokenCache
	jwtCache jwtCache
	anon     []byte
	bodies   *proxy.Bodies
	sources  *proxy.SourceCap
	metrics  *metrics
	registry *prometheus.Registry

	https, http, admin net.Listener
	conns              chan struct{} // semaphore of open client connections
}

// New validates cfg, loads the resource file (or compiles the initial
// snapshot) and binds every listener, so
// that a bad flag or file fails at start. On error it releases what it opened.
func New(cfg Config) (_ *Gateway, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Events == nil {
		cfg.Events = audit.SlogSink{Log: cfg.Log}
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	switch {
	case cfg.Source == nil:
		return nil, errors.New("gateway needs an identity source")
	case cfg.TLS == nil:
		return nil, errors.New("gateway needs a TLS configuration (certificate files, ACME or Ward's CA)")
	case cfg.APIKeys == nil:
		return nil, errors.New("gateway needs an API key store")
	case cfg.HTTPListen != "" && cfg.RedirectHandler == nil:
		return nil, errors.New("gateway: an HTTP listener needs a redirect handler")
	}
	id, err := spiffeid.FromSegments(cfg.TrustDomain, "gateway", cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("gateway name %q: %w", cfg.Name, err)
	}
	g := &Gateway{cfg: cfg, id: id, lim: cfg.Limits.withDefaults(), log: cfg.Log, registry: cfg.Registry,
		keys: authn.NewAPIKeys(cfg.APIKeys), local: ratelimit.NewLocal(ratelimit.LocalOptions{}), anon: cfg.AnonymousSecret}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	if len(g.anon) == 0 {
		g.anon = make([]byte, 32)
		_, _ = rand.Read(g.anon)
	}
	g.bodies, g.sources = cfg.Bodies, proxy.NewSourceCap(g.lim.MaxPerSource)
	if g.bodies == nil {
		g.bodies = proxy.NewBodies(proxy.BodyConfig{})
	}
	g.limiter = cfg.Limiter
	if g.limiter == nil {
		g.limiter = g.local
	}
	if g.cfg.TokenTTL == 0 {
		g.cfg.TokenTTL = 2 * time.Minute
	}
	g.conns = make(chan struct{}, g.lim.MaxConns)
	if g.conf, err = newConfig(cfg, id.String()); err != nil {
		return nil, err
	}
	g.metrics = newMetrics(g.registry)
	g.registry.MustRegister(bodyGauge(g.bodies))
	g.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g.guard = g.newGuard()
	g.mesh = mesh.New(mesh.Config{
		Source: cfg.Source, TrustDomain: cfg.TrustDomain, Resolve: g.endpoints,
		ConnectTimeout: g.lim.ConnectTimeout, RequestTimeout: g.lim.RequestTimeout,
		Resilience: cfg.Resilience, Log: cfg.Log,
	})
	connRate := cfg.ConnRate
	if connRate.Rate.Count == 0 {
		connRate = ratelimit.Limit{Rate: ratelimit.Rate{Count: 100, Per: time.Second}, Burst: 200}
	}
	if err := connRate.Validate(); err != nil {
		return nil, fmt.Errorf("connection rate: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if g.https, err = ratelimit.NewConnLimiter(ln, g.local, connRate); err != nil {
		ln.Close()
		return nil, err
	}
	if cfg.HTTPListen != "" {
		if g.http, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
			return nil, fmt.Errorf("http listen %s: %w", cfg.HTTPListen, err)
		}
	}
	if cfg.Admin != "" {
		if g.admin, err = net.Listen("tcp", cfg.Admin); err != nil {
			return nil, fmt.Errorf("admin listen %s: %w", cfg.Admin, err)
		}
	}
	return g, nil
}

// Apply validates and compiles snap and, if it is good, swaps it in
// atomically (requests in flight finish on the old one). A bad snapshot is
// refused with its error and the running configuration stays. Either way
// a config.reload audit event is emitted (allow with the changes, or deny
// with reason invalid_config and the error), with the version in its
// fields. Applying data identical to the running snapshot is a no-op that
// returns nil and emits nothing (ConfigVersion then reports snap's
// version). A gateway started with a ConfigFile refuses snapshots.
func (g *Gateway) Apply(snap Snapshot) error { return g.conf.Apply(snap) }

// ConfigVersion reports the version of the running snapshot (0 for a file).
func (g *Gateway) ConfigVersion() int64 { return g.conf.Load().Version }

// ID is the gateway's SPIFFE ID.
func (g *Gateway) ID() spiffeid.ID { return g.id }

// Endpoints are the addresses the gateway sends service's requests to in
// its running configuration: static ones and those registered.
func (g *Gateway) Endpoints(service string) []string {
	return slices.Clone(g.conf.Load().Value.services[service])
}

// Addr is the HTTPS listener's address.
func (g *Gateway) Addr() string { return g.https.Addr().String() }

// HTTPAddr is the redirect listener's address ("" when disabled).
func (g *Gateway) HTTPAddr() string {
	if g.http == nil {
		return ""
	}
	return g.http.Addr().String()
}

// AdminAddr is the metrics listener's address ("" when disabled).
func (g *Gateway) AdminAddr() string {
	if g.admin == nil {
		return ""
	}
	return g.admin.Addr().String()
}

// Run serves until ctx ends, then shuts down gracefully.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.close()
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return g.conf.Run(ctx) })
	eg.Go(func() error { return g.serveHTTPS(ctx) })
	eg.Go(func() error { g.sweep(ctx); return nil })
	if g.http != nil {
		srv := &http.Server{Handler: g.cfg.RedirectHandler, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 8 << 10,
			ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelDebug)}
		eg.Go(func() error { return proxy.Serve(ctx, srv, g.guard.Listener(g.http)) })
	}
	if g.admin != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(g.registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		eg.Go(func() error { return proxy.Serve(ctx, srv, g.admin) })
	}
	g.log.Info("gateway running", "id", g.id, "https", g.Addr(), "http", g.HTTPAddr(), "admin", g.AdminAddr())
	err := eg.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// sweep drops idle rate-limit state now and then.
func (g *Gateway) sweep(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.local.Sweep()
			g.tokens.sweep(time.Now())
			g.jwtCache.sweep(time.Now())
		}
	}
}

// serveHTTPS accepts TLS connections: HTTP/2 is served by net/http on the
// TLS connection, HTTP/1.x goes through the request-framing guard first.
func (g *Gateway) serveHTTPS(ctx context.Context) error {
	tlsCfg := g.cfg.TLS.Clone()
	if len(tlsCfg.NextProtos) == 0 {
		tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	}
	srv := &http.Server{
		Handler:           g.newPipeline(),
		ReadHeaderTimeout: g.lim.ReadHeaderTimeout,
		ReadTimeout:       g.lim.ReadTimeout,
		IdleTimeout:       g.lim.IdleTimeout,
		MaxHeaderBytes:    g.lim.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if _, ok := c.(*tls.Conn); ok {
				return ctx
			}
			return proxy.ConnContext(ctx, c)
		},
	}
	front := &pipeline.Front{
		Listener: g.https, TLS: tlsCfg, Guard: g.guard, Server: srv, HandshakeTimeout: handshakeTimeout,
		Admit: func(c net.Conn) (net.Conn, bool) {
			select {
			case g.conns <- struct{}{}:
				return &heldConn{Conn: c, release: func() { <-g.conns }}, true
			default: // at the connection limit: turn the newcomer away at once
				g.metrics.refused.WithLabelValues("max_connections").Inc()
				c.Close()
				return nil, false
			}
		},
		Refused: func(raw net.Conn, err error) {
			g.metrics.refused.WithLabelValues("tls_handshake").Inc()
			g.log.Debug("TLS handshake failed", "source", raw.RemoteAddr(), "err", err)
		},
		Serve: func(_ context.Context, tc *tls.Conn, c net.Conn) net.Conn {
			if tc.ConnectionState().NegotiatedProtocol == "acme-tls/1" {
				tc.Close() // an ACME CA validating tls-alpn-01: the handshake was all
				return nil
			}
			return c
		},
	}
	return front.Run(ctx)
}

// heldConn releases its connection slot when closed.
type heldConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *heldConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func (g *Gateway) close() {
	for _, l := range []net.Listener{g.https, g.http, g.admin} {
		if l != nil {
			l.Close()
		}
	}
	if g.mesh != nil {
		g.mesh.Close()
	}
}
