package mesh

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/goleak"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
	"github.com/wardsec/ward/internal/identity"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var td = spiffeid.RequireTrustDomainFromString("example.org")

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// authority is a real Ward server in this process: it issues the SVIDs of
// the callers and services of a test.
type authority struct {
	t   testing.TB
	srv *control.Server
}

func newAuthority(t testing.TB) *authority {
	t.Helper()
	return &authority{t: t, srv: controltest.Start(t, nil)}
}

// svid enrolls spiffe://example.org/svc/name through the server's API.
func (a *authority) svid(name string) *identity.Source {
	a.t.Helper()
	return controltest.Enroll(a.t, a.srv, spiffeid.RequireFromSegments(td, "svc", name))
}

// service stands for a service's sidecar inbound: mutual TLS 1.3 with the
// SVID of src, ALPN h2 and http/1.1 as the sidecar offers them. It counts
// the connections it accepts and the requests its handler sees.
type service struct {
	addr  string
	conns atomic.Int64 // connections accepted (each one a handshake)
	hits  atomic.Int64 // requests that reached the handler

	mu     sync.Mutex
	protos map[string]int // request protocol -> count

	// kill closes the listener and every connection at once, as a process
	// killed would (idempotent).
	kill func()
}

func (s *service) seen(proto string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.protos[proto]
}

// serve starts a service answering with h (nil: 200 "ok"); it stops when
// the test ends.
func serve(t testing.TB, src *identity.Source, h http.HandlerFunc) *service {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &service{addr: l.Addr().String(), protos: map[string]int{}}
	cfg := src.ServerTLSConfig(identity.AuthorizeMemberOf(td))
	cfg.NextProtos = []string{"h2", "http/1.1"}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.hits.Add(1)
			s.mu.Lock()
			s.protos[r.Proto]++
			s.mu.Unlock()
			h(w, r)
		}),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(tls.NewListener(l, cfg)); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("service: %v", err)
		}
	}()
	var once sync.Once
	s.kill = func() { once.Do(func() { srv.Close(); <-done }) }
	t.Cleanup(s.kill)
	return s
}

// client returns a mesh client with src's SVID that resolves each service
// of eps; it is closed when the test ends.
func client(t testing.TB, src *identity.Source, eps map[string][]string, res Resilience) *Client {
	t.Helper()
	c := New(Config{
		Source: src, TrustDomain: td, Log: quiet(), Resilience: res,
		Resolve: func(name string) ([]string, bool) { e, ok := eps[name]; return e, ok },
	})
	t.Cleanup(c.Close)
	return c
}

// front is what calls the mesh client: a sidecar's outbound listener or a
// gateway. It serves plain HTTP/1.1 and unencrypted HTTP/2, so a test can
// be either kind of caller, and forwards every request to service name.
func front(t testing.TB, c *Client, name string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, err := c.Upstream(name)
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			u.ServeHTTP(w, r)
		}),
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return "http://" + l.Addr().String()
}

// caller returns an HTTP client that speaks HTTP/1.1 (h2 false) or
// unencrypted HTTP/2 (h2 true) to a front.
func caller(t testing.TB, h2 bool) *http.Client {
	t.Helper()
	var protos http.Protocols
	if h2 {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	tr := &http.Transport{Protocols: &protos}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// call sends one request and returns its status and body.
func call(t testing.TB, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return call(t, c, req)
}
