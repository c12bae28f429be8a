package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/proxy"
)

// meshClient opens mutual TLS to other services' sidecars. Each upstream
// service has its own connection pools; the server must present exactly
// that service's SPIFFE ID.
type meshClient struct {
	res  Resilience
	src  *identity.Source
	td   spiffeid.TrustDomain
	conf *configWatcher
	lim  Limits
	log  *slog.Logger

	mu  sync.Mutex
	ups map[string]*upstream
}

// upstream is one destination service.
type upstream struct {
	name    string
	id      spiffeid.ID
	h2, h1  *httputil.ReverseProxy // h1 for upgrades (WebSocket)
	hosts   *proxy.Ejector         // round robin, outliers ejected
	breaker *proxy.Breaker
	budget  *proxy.RetryBudget
	t2, t1  *http.Transport
	snap    *snapshot // the configuration hosts was last set from
}

var errBreakerOpen = errors.New("circuit breaker open")

func newMeshClient(src *identity.Source, td spiffeid.TrustDomain, conf *configWatcher, lim Limits, res Resilience, log *slog.Logger) *meshClient {
	return &meshClient{src: src, td: td, conf: conf, lim: lim, res: res, log: log, ups: map[string]*upstream{}}
}

// resilient puts an upstream's circuit breaker and retry budget around its
// transport. Only requests that can be replayed safely are retried, once,
// and only on a failure to connect or a broken connection, within budget.
type resilient struct {
	u  *upstream
	rt http.RoundTripper
}

func (r *resilient) RoundTrip(req *http.Request) (*http.Response, error) {
	done, ok := r.u.breaker.Allow()
	if !ok {
		return nil, errBreakerOpen
	}
	r.u.budget.Request()
	resp, err := r.try(req)
	if err != nil && req.Context().Err() == nil && r.u.budget.CanRetryRequest(req) {
		resp, err = r.try(req)
	}
	// A caller that hung up says nothing about the upstream: it must not
	// open the breaker for everyone else (it releases a probe as a success).
	done(req.Context().Err() != nil || (err == nil && !gatewayError(resp.StatusCode)))
	return resp, err
}

// try sends req to one endpoint picked by the ejector and reports how the
// endpoint did. Each endpoint has its own connections (the pool is keyed
// by the URL's host), so load spreads and a dead one is left alone.
func (r *resilient) try(req *http.Request) (*http.Response, error) {
	host, err := r.u.hosts.Pick()
	if err != nil {
		return nil, err
	}
	out, u := *req, *req.URL
	u.Host = host
	out.URL = &u
	resp, err := r.rt.RoundTrip(&out)
	if req.Context().Err() == nil { // a caller hanging up is not the endpoint's fault
		r.u.hosts.Report(host, err == nil && !gatewayError(resp.StatusCode))
	}
	return resp, err
}

// gatewayError reports statuses that say the upstream's sidecar, not its
// app's logic, failed.
func gatewayError(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// upstream returns (creating once) the client side for a service.
func (m *meshClient) upstream(name string) (*upstream, error) {
	snap := m.conf.Load()
	svc, ok := snap.services[name]
	if !ok {
		return nil, fmt.Errorf("unknown service %q", name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if u := m.ups[name]; u != nil {
		if u.snap != snap { // a reload may have changed the endpoints
			u.hosts.SetHosts(svc.Endpoints)
			u.snap = snap
		}
		return u, nil
	}
	id, err := spiffeid.FromSegments(m.td, "svc", name)
	if err != nil {
		return nil, err
	}
	u := &upstream{
		name: name, id: id, snap: snap,
		hosts:   proxy.NewEjector(svc.Endpoints, m.res.Ejector),
		breaker: proxy.NewBreaker(m.res.Breaker),
		budget:  proxy.NewRetryBudget(m.res.Retry),
	}
	u.t2 = m.transport(u, []string{"h2", "http/1.1"})
	u.t1 = m.transport(u, []string{"http/1.1"})
	u.h2, u.h1 = m.proxy(u, &resilient{u: u, rt: u.t2}), m.proxy(u, &resilient{u: u, rt: u.t1})
	m.ups[name] = u
	return u, nil
}

// dialTLS connects to the endpoint host of u and completes mutual TLS,
// checking that the server is u's identity.
func (m *meshClient) dialTLS(ctx context.Context, u *upstream, host string, alpn []string) (*tls.Conn, error) {
	d := net.Dialer{Timeout: m.lim.ConnectTimeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	cfg := m.src.ClientTLSConfig(identity.AuthorizeID(u.id))
	cfg.NextProtos = alpn
	tc := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("mutual TLS with %s at %s: %w", u.id, host, err)
	}
	return tc, nil
}

func (m *meshClient) transport(u *upstream, alpn []string) *http.Transport {
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			c, err := m.dialTLS(ctx, u, addr, alpn)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		ForceAttemptHTTP2:     len(alpn) > 1,
		MaxIdleConnsPerHost:   64,
		MaxConnsPerHost:       256, // per endpoint
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: m.lim.RequestTimeout,
		DisableCompression:    true,
	}
}

func (m *meshClient) proxy(u *upstream, t http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = u.name
			pr.Out.Host = u.name
			pr.Out.RequestURI = ""
		},
		Transport:  t,
		BufferPool: bufPool,
		// No FlushInterval: ReverseProxy flushes at once by itself for
		// responses without a length (gRPC) and event streams; forcing it
		// for every response costs a write per response (measured in bench/mesh).
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			m.log.Warn("upstream call failed", "service", u.name, "err", err)
			status := http.StatusBadGateway
			if errors.Is(err, proxy.ErrAllEjected) || errors.Is(err, errBreakerOpen) {
				status = http.StatusServiceUnavailable
			}
			http.Error(w, fmt.Sprintf("ward: cannot reach %s: %v", u.name, rootErr(err)), status)
		},
	}
}

func rootErr(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

func (m *meshClient) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.ups {
		u.t1.CloseIdleConnections()
		u.t2.CloseIdleConnections()
	}
}

// outboundHandler is the app's side: with fixed empty, the app names the
// service as the request's host (HTTP_PROXY style, http://orders/path);
// otherwise every request goes to the fixed service.
func (s *Sidecar) outboundHandler(fixed string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			http.Error(w, "ward: CONNECT is not supported; call http://<service>/ and let the sidecar encrypt", http.StatusMethodNotAllowed)
			return
		}
		name := fixed
		if name == "" {
			host := r.URL.Host
			if host == "" {
				host = r.Host
			}
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			name = strings.ToLower(host)
		}
		u, err := s.mesh.upstream(name)
		if err != nil {
			http.Error(w, "ward: "+err.Error(), http.StatusBadGateway)
			return
		}
		if r.Header.Get("Upgrade") != "" {
			u.h1.ServeHTTP(w, r)
			return
		}
		u.h2.ServeHTTP(w, r)
	})
}
