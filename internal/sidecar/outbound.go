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
)

// meshClient opens mutual TLS to other services' sidecars. Each upstream
// service has its own connection pools; the server must present exactly
// that service's SPIFFE ID.
type meshClient struct {
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
	name   string
	id     spiffeid.ID
	h2, h1 *httputil.ReverseProxy // h1 for upgrades (WebSocket)
	hosts  *hostSet
	t2, t1 *http.Transport
}

func newMeshClient(src *identity.Source, td spiffeid.TrustDomain, conf *configWatcher, lim Limits, log *slog.Logger) *meshClient {
	return &meshClient{src: src, td: td, conf: conf, lim: lim, log: log, ups: map[string]*upstream{}}
}

// upstream returns (creating once) the client side for a service.
func (m *meshClient) upstream(name string) (*upstream, error) {
	svc, ok := m.conf.Load().services[name]
	if !ok {
		return nil, fmt.Errorf("unknown service %q", name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if u := m.ups[name]; u != nil {
		u.hosts.set(svc.Endpoints)
		return u, nil
	}
	id, err := spiffeid.FromSegments(m.td, "svc", name)
	if err != nil {
		return nil, err
	}
	u := &upstream{name: name, id: id, hosts: newHostSet(svc.Endpoints)}
	u.t2 = m.transport(u, []string{"h2", "http/1.1"})
	u.t1 = m.transport(u, []string{"http/1.1"})
	u.h2, u.h1 = m.proxy(u, u.t2), m.proxy(u, u.t1)
	m.ups[name] = u
	return u, nil
}

// dialTLS connects to one endpoint of u and completes mutual TLS, checking
// that the server is u's identity.
func (m *meshClient) dialTLS(ctx context.Context, u *upstream, alpn []string) (*tls.Conn, string, error) {
	host, err := u.hosts.pick()
	if err != nil {
		return nil, "", err
	}
	d := net.Dialer{Timeout: m.lim.ConnectTimeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		u.hosts.report(host, false)
		return nil, host, err
	}
	cfg := m.src.ClientTLSConfig(identity.AuthorizeID(u.id))
	cfg.NextProtos = alpn
	tc := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		u.hosts.report(host, false)
		return nil, host, fmt.Errorf("mutual TLS with %s at %s: %w", u.id, host, err)
	}
	u.hosts.report(host, true)
	return tc, host, nil
}

func (m *meshClient) transport(u *upstream, alpn []string) *http.Transport {
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, _, err := m.dialTLS(ctx, u, alpn)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		ForceAttemptHTTP2:     len(alpn) > 1,
		MaxIdleConnsPerHost:   64,
		MaxConnsPerHost:       256,
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
		Transport:     t,
		BufferPool:    bufPool,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			m.log.Warn("upstream call failed", "service", u.name, "err", err)
			status := http.StatusBadGateway
			if errors.Is(err, errNoHealthyHost) {
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
