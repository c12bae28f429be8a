// Package mesh is the client side of Ward's service mesh: it opens mutual
// TLS 1.3 to a service's sidecar with the caller's own SVID, accepts only a
// server that proves exactly that service's SPIFFE ID, and puts connection
// pools, outlier ejection, a circuit breaker and a retry budget around each
// upstream service. Sidecars (outbound) and gateways share it.
package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/proxy"
)

// HandshakeTimeout bounds a TLS handshake with an upstream sidecar.
const HandshakeTimeout = 10 * time.Second

// defaultMaxConns bounds the connections of one protocol to one endpoint.
// On the HTTP/1.1 pool it is also how many requests run at once there
// (one per connection); more wait for a free connection.
const defaultMaxConns = 256

// Resilience configures how a client treats failing upstreams.
type Resilience struct {
	Ejector proxy.EjectorConfig
	Breaker proxy.BreakerConfig
	Retry   proxy.RetryBudgetConfig
}

// Config configures a Client.
type Config struct {
	// Source supplies the caller's SVID and the trust bundle.
	Source      *identity.Source
	TrustDomain spiffeid.TrustDomain
	// Resolve returns the endpoints (host:port of sidecars) of a service,
	// or false when the service is unknown. It is called on every request
	// and must be cheap; endpoints may change between calls.
	Resolve        func(service string) ([]string, bool)
	ConnectTimeout time.Duration // default 3s
	RequestTimeout time.Duration // response headers; default 60s
	Resilience     Resilience
	Log            *slog.Logger
}

// Client opens mutual TLS to other services' sidecars. Each upstream
// service has its own connection pools; the server must present exactly
// that service's SPIFFE ID.
type Client struct {
	cfg       Config
	maxConns  int          // connections per endpoint and protocol (defaultMaxConns)
	h1Callers bool         // HTTP/1.x callers get the HTTP/1.1 pool (hop)
	mu        sync.RWMutex // guards ups and each Upstream's eps
	ups       map[string]*Upstream
}

// New returns a client; connections are opened on first use.
func New(cfg Config) *Client {
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 3 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 60 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Client{cfg: cfg, maxConns: defaultMaxConns, h1Callers: hop == hopH1, ups: map[string]*Upstream{}}
}

// Upstream is one destination service.
type Upstream struct {
	name    string
	id      spiffeid.ID
	c       *Client
	h2, h1  *httputil.ReverseProxy // h1: upgrades, and HTTP/1.x callers with hop h1
	hosts   *proxy.Ejector         // least outstanding of two, outliers ejected
	breaker *proxy.Breaker
	budget  *proxy.RetryBudget
	t2, t1  *http.Transport
	eps     []string // the endpoints hosts was last set from
}

// StatusClientClosed is recorded for a request whose caller went away
// before the service answered.
const StatusClientClosed = 499

// ErrBreakerOpen is returned (and answered with 503) while an upstream's
// circuit breaker is open.
var ErrBreakerOpen = errors.New("circuit breaker open")

// Name is the service's name; ID its SPIFFE ID.
func (u *Upstream) Name() string { return u.name }

// ID is the SPIFFE ID the upstream's sidecar must present.
func (u *Upstream) ID() spiffeid.ID { return u.id }

// Upstream returns (creating once) the client side for a service.
func (c *Client) Upstream(name string) (*Upstream, error) {
	eps, ok := c.cfg.Resolve(name)
	if !ok {
		return nil, fmt.Errorf("unknown service %q", name)
	}
	// Every request comes here: the common case, a known service whose
	// endpoints did not change, takes only the read lock.
	c.mu.RLock()
	u := c.ups[name]
	same := u != nil && slices.Equal(u.eps, eps)
	c.mu.RUnlock()
	if same {
		return u, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if u := c.ups[name]; u != nil {
		if !slices.Equal(u.eps, eps) { // a reload may have changed the endpoints
			u.hosts.SetHosts(eps)
			u.eps = eps
		}
		return u, nil
	}
	id, err := spiffeid.FromSegments(c.cfg.TrustDomain, "svc", name)
	if err != nil {
		return nil, err
	}
	res := c.cfg.Resilience
	u = &Upstream{
		name: name, id: id, c: c, eps: eps,
		hosts:   proxy.NewEjector(eps, res.Ejector),
		breaker: proxy.NewBreaker(res.Breaker),
		budget:  proxy.NewRetryBudget(res.Retry),
	}
	u.t2, u.t1 = c.transport(u, true), c.transport(u, false)
	u.h2, u.h1 = c.proxy(u, &resilient{u: u, rt: u.t2}), c.proxy(u, &resilient{u: u, rt: u.t1})
	c.ups[name] = u
	return u, nil
}

// ServeHTTP forwards r to the service over mutual TLS: over HTTP/2, or
// over the HTTP/1.1 pool for upgrades (WebSocket), and for HTTP/1.x
// callers when the client was built to (see hop). Failures are answered
// with 502, or 503 when the breaker is open, every endpoint is ejected or
// the service has none.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.pick(r).ServeHTTP(w, r)
}

// pick chooses the pool for r. HTTP/2 callers and gRPC always get HTTP/2.
func (u *Upstream) pick(r *http.Request) *httputil.ReverseProxy {
	switch {
	case r.Header.Get("Upgrade") != "":
		return u.h1
	case u.c.h1Callers && r.ProtoMajor == 1 && !proxy.GRPCContentType(r.Header.Get("Content-Type")):
		return u.h1
	}
	return u.h2
}

// hop is the protocol HTTP/1.x callers get on the mesh hop: "" for HTTP/2,
// the default, or "h1" for the HTTP/1.1 keep-alive pool. HTTP/2 is the
// default because, with requests in flight, it measured cheaper on the
// client side (BenchmarkHop with 16 callers on one core: about 37 against
// 46 us of CPU per request; bench/mesh, the sidecar pair's A: 91 against
// 113 and 101 against 110 us in two runs): it carries many requests per
// write and read, where HTTP/1.1 pays its own system calls and goroutine
// hand-offs for each. HTTP/1.1 is cheaper only one request at a time. See
// bench/mesh/README.md. hop is set at build time, for side-by-side
// benchmarks:
//
//	go build -ldflags '-X github.com/wardsec/ward/internal/mesh.hop=h1' ./cmd/ward
var hop string

const hopH1 = "h1"

// DialStream opens an opaque stream (ALPN alpn) to one endpoint of the
// service, for L4 traffic, and reports the outcome to the ejector. The
// stream counts as outstanding on its endpoint until it is closed, so
// long-lived streams spread by least connections.
func (u *Upstream) DialStream(ctx context.Context, alpn string) (net.Conn, error) {
	l, err := u.hosts.Pick()
	if err != nil {
		return nil, err
	}
	tc, err := u.c.dialTLS(ctx, u, l.Host, []string{alpn})
	if err != nil {
		if ctx.Err() != nil {
			u.hosts.Done(l, proxy.Abandoned)
		} else {
			u.hosts.Done(l, proxy.Failed)
		}
		return nil, err
	}
	return &stream{Conn: tc, hosts: u.hosts, lease: l}, nil
}

// stream is an L4 stream that gives its endpoint's lease back when it is
// closed (once).
type stream struct {
	*tls.Conn
	hosts *proxy.Ejector
	lease proxy.Lease
	once  sync.Once
}

func (s *stream) Close() error {
	err := s.Conn.Close()
	s.once.Do(func() { s.hosts.Done(s.lease, proxy.Succeeded) })
	return err
}

// resilient puts an upstream's circuit breaker and retry budget around its
// transport. Only requests that can be replayed safely are retried, once,
// and only on a failure to connect or a broken connection, within budget.
type resilient struct {
	u  *Upstream
	rt http.RoundTripper
}

func (r *resilient) RoundTrip(req *http.Request) (*http.Response, error) {
	done, ok := r.u.breaker.Allow()
	if !ok {
		return nil, ErrBreakerOpen
	}
	r.u.budget.Request()
	resp, host, err := r.try(req, "")
	none := errors.Is(err, proxy.ErrNoEndpoints)
	if err != nil && !none && req.Context().Err() == nil && r.u.budget.CanRetryRequest(req) {
		resp, _, err = r.try(req, host) // elsewhere, when there is elsewhere
		none = errors.Is(err, proxy.ErrNoEndpoints)
	}
	// A caller that hung up says nothing about the upstream: it must not
	// open the breaker for everyone else (it releases a probe as a success).
	// Nor does a service without endpoints yet: its first instances must
	// not meet an open breaker.
	done(req.Context().Err() != nil || none || (err == nil && !gatewayError(resp.StatusCode)))
	return resp, err
}

// try sends req to one endpoint picked by the ejector, other than avoid
// when it can, and reports how the endpoint did (the request is outstanding there until its response
// headers arrive or it fails). Each endpoint has its own connections (the pool is keyed
// by the URL's host), so load spreads and a dead one is left alone.
func (r *resilient) try(req *http.Request, avoid string) (*http.Response, string, error) {
	var l proxy.Lease
	var err error
	if avoid == "" {
		l, err = r.u.hosts.Pick()
	} else {
		l, err = r.u.hosts.PickOther(avoid)
	}
	if err != nil {
		return nil, "", err
	}
	out, u := *req, *req.URL
	u.Host = l.Host
	out.URL = &u
	resp, err := r.rt.RoundTrip(&out)
	switch {
	case req.Context().Err() != nil: // a caller hanging up is not the endpoint's fault
		r.u.hosts.Done(l, proxy.Abandoned)
	case err == nil && !gatewayError(resp.StatusCode):
		r.u.hosts.Done(l, proxy.Succeeded)
	default:
		r.u.hosts.Done(l, proxy.Failed)
	}
	return resp, l.Host, err
}

// gatewayError reports statuses that say the upstream's sidecar, not its
// app's logic, failed.
func gatewayError(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// dialTLS connects to the endpoint host of u and completes mutual TLS,
// checking that the server is u's identity.
func (c *Client) dialTLS(ctx context.Context, u *Upstream, host string, alpn []string) (*tls.Conn, error) {
	d := net.Dialer{Timeout: c.cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	cfg := c.cfg.Source.ClientTLSConfig(identity.AuthorizeID(u.id))
	cfg.NextProtos = alpn
	tc := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("mutual TLS with %s at %s: %w", u.id, host, err)
	}
	return tc, nil
}

// transport returns the pool of one protocol (h2 true: HTTP/2, false:
// HTTP/1.1 keep-alive) to the endpoints of u. Every new connection is
// dialed by dialTLS, which checks u's identity. Each endpoint has at most
// maxConns connections per protocol; callers beyond wait for one. The
// HTTP/1.1 pool keeps as many idle as it may open, so that a load within
// the bound, once warm, never dials or handshakes again.
func (c *Client) transport(u *Upstream, h2 bool) *http.Transport {
	var protos http.Protocols
	alpn := []string{"http/1.1"}
	if h2 {
		protos.SetHTTP2(true)
		protos.SetHTTP1(true) // if a sidecar offers only http/1.1
		alpn = []string{"h2", "http/1.1"}
	} else {
		protos.SetHTTP1(true)
	}
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			tc, err := c.dialTLS(ctx, u, addr, alpn)
			if err != nil {
				return nil, err
			}
			return tc, nil
		},
		Protocols:             &protos,
		MaxIdleConnsPerHost:   c.maxConns,
		MaxConnsPerHost:       c.maxConns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: c.cfg.RequestTimeout,
		DisableCompression:    true,
	}
}

func (c *Client) proxy(u *Upstream, t http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = u.name
			pr.Out.Host = u.name
			pr.Out.RequestURI = ""
			// Rewrite runs after the hop-by-hop headers were removed: a
			// Connection header naming Ward's headers took them out of
			// pr.Out. Ward's headers always travel.
			proxy.RestoreWard(pr.Out.Header, pr.In.Header)
		},
		Transport:  t,
		BufferPool: proxy.Buffers,
		// No FlushInterval: ReverseProxy flushes at once by itself for
		// responses without a length (gRPC) and event streams; forcing it
		// for every response costs a write per response (measured in bench/mesh).
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				// The caller hung up: nothing failed upstream, and nobody
				// reads the answer. 499 (nginx's "client closed request")
				// keeps access records from blaming the service.
				w.WriteHeader(StatusClientClosed)
				return
			}
			status, reason := failure(err)
			// The cause (a dial or TLS error, with the endpoint's address)
			// is the operator's: told to clients it would let whoever sets
			// a Service's endpoints probe ports through Ward.
			c.cfg.Log.Warn("upstream call failed", "service", u.name, "reason", reason, "err", err)
			id := r.Header.Get(pipeline.HeaderRequestID)
			if !pipeline.ValidRequestID(id) {
				id = pipeline.NewRequestID()
			}
			pipeline.Render(w, pipeline.Lookup(reason).WithStatus(status), id)
		},
	}
}

// Reason codes of a failed upstream call, told to the client.
const (
	ReasonUnreachable = "upstream_unreachable"
	ReasonBreakerOpen = "circuit_open"
	ReasonAllEjected  = "endpoints_ejected"
	// ReasonNoEndpoints: the service has no endpoint at all (no static
	// one, and no instance registered, or none left).
	ReasonNoEndpoints = "no_endpoints"
)

// failure classifies an upstream call's error for the client.
func failure(err error) (status int, reason string) {
	switch {
	case errors.Is(err, ErrBreakerOpen):
		return http.StatusServiceUnavailable, ReasonBreakerOpen
	case errors.Is(err, proxy.ErrAllEjected):
		return http.StatusServiceUnavailable, ReasonAllEjected
	case errors.Is(err, proxy.ErrNoEndpoints):
		return http.StatusServiceUnavailable, ReasonNoEndpoints
	}
	return http.StatusBadGateway, ReasonUnreachable
}

// Close releases idle connections.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.ups {
		u.t1.CloseIdleConnections()
		u.t2.CloseIdleConnections()
	}
}
