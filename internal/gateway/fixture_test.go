package gateway_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/authn/authntest"
	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/control/controltest"
	"github.com/wardsec/ward/internal/gateway"
	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/ratelimit"
	"github.com/wardsec/ward/internal/sidecar"
	"github.com/wardsec/ward/internal/testport"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// edge is a Ward server, a gateway, an identity provider and two services
// (orders, catalog) behind sidecars, all in this process on loopback.
type edge struct {
	t        testing.TB
	ctx      context.Context
	srv      *control.Server
	operator *control.Client
	config   string
	idp      *authntest.IDP
	idpKey   crypto.Signer
	keys     *authn.MemoryAPIKeyStore
	apiKey   string // valid on every route, application "shop"
	gw       *gateway.Gateway
	events   *audit.Recorder // the gateway's access records
	orders   *service
	catalog  *service
	client   *http.Client // trusts the gateway's certificate
	wg       sync.WaitGroup
}

// service is a recording app behind its sidecar.
type service struct {
	name   string
	app    *recorder
	sc     *sidecar.Sidecar
	events *audit.Recorder
	addr   string
}

// resources: catalog is open to anonymous callers with an optional key;
// orders needs an API key and a JWT with orders:read (the sidecar checks
// it too); /orders/admin is never allowed; /limited allows 3 requests then
// limits per API key; /catalog/anon-limited allows 2 per anonymous caller;
// /catalog/small takes bodies of at most 1 KiB; /catalog/gold answers
// only requests whose X-Tier is gold (a route condition).
const resources = `apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {endpoints: ["%[1]s"]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {endpoints: ["%[2]s"]}
---
apiVersion: ward/v1
kind: Issuer
metadata: {name: corp}
spec: {issuerURL: "%[3]s", audiences: [ward-edge], algorithms: [ES256]}
---
apiVersion: ward/v1
kind: Route
metadata: {name: orders}
spec:
  pathPrefix: /orders
  service: orders
  auth: {apiKey: required, user: jwt, issuers: [corp]}
---
apiVersion: ward/v1
kind: Route
metadata: {name: catalog}
spec:
  pathPrefix: /catalog
  service: catalog
  auth: {apiKey: optional, user: anonymous}
---
apiVersion: ward/v1
kind: Route
metadata: {name: limited}
spec:
  pathPrefix: /limited
  service: catalog
  auth: {apiKey: required, user: anonymous}
  rateLimit: {key: apikey, rate: 3/m, burst: 3}
---
apiVersion: ward/v1
kind: Route
metadata: {name: anon-limited}
spec:
  pathPrefix: /catalog/anon-limited
  service: catalog
  auth: {apiKey: none, user: anonymous}
  rateLimit: {key: anonymous, rate: 2/m, burst: 2}
---
apiVersion: ward/v1
kind: Route
metadata: {name: small}
spec:
  pathPrefix: /catalog/small
  service: catalog
  auth: {apiKey: none, user: anonymous}
  limits: {body: 1KiB}
---
apiVersion: ward/v1
kind: Route
metadata: {name: gold}
spec:
  pathPrefix: /catalog/gold
  service: catalog
  auth: {apiKey: none, user: anonymous, when: 'request.headers["x-tier"] == "gold"'}
---
apiVersion: ward/v1
kind: Route
metadata: {name: waf}
spec:
  pathPrefix: /catalog/waf
  service: catalog
  auth: {apiKey: none, user: anonymous}
  waf: {mode: enforce, body: 4KiB}
---
apiVersion: ward/v1
kind: Route
metadata: {name: waf-dry}
spec:
  pathPrefix: /catalog/waf-dry
  service: catalog
  auth: {apiKey: none, user: anonymous}
  waf: {mode: dry-run}
---
apiVersion: ward/v1
kind: Route
metadata: {name: waf-tuned}
spec:
  pathPrefix: /catalog/waf-tuned
  service: catalog
  auth: {apiKey: none, user: anonymous}
  waf:
    mode: enforce
    overBound: pass
    body: 1KiB
    exclusions: [{rule: 942100, parameter: q}]
---
apiVersion: ward/v1
kind: Route
metadata: {name: waf-p4}
spec:
  pathPrefix: /catalog/waf-p4
  service: catalog
  auth: {apiKey: none, user: anonymous}
  waf: {mode: enforce, paranoia: 4}
---
apiVersion: ward/v1
kind: Route
metadata: {name: waf-p2}
spec:
  pathPrefix: /catalog/waf-p2
  service: catalog
  auth: {apiKey: none, user: anonymous}
  waf: {mode: enforce, paranoia: 2}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
    - from: [gateway/edge]
      methods: [GET, POST]
      paths: ["/orders/*"]
      when: '"orders:read" in user.scopes'
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: catalog-callers}
spec:
  target: catalog
  rules:
    - from: [gateway/edge]
      methods: [GET, POST]
      paths: ["/catalog/*", "/limited/*", "/limited"]
`

func newEdge(t testing.TB) *edge {
	t.Helper()
	return newEdgeWith(t, nil)
}

func newEdgeWith(t testing.TB, mod func(*gateway.Config)) *edge {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	srv, err := control.NewServer(ctx, control.ServerConfig{
		DataDir: filepath.Join(dir, "server"), TrustDomain: td.Name(),
		Listen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", Log: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &edge{t: t, ctx: ctx, srv: srv, config: filepath.Join(dir, "edge.yaml")}
	e.wg.Add(1)
	go func() { defer e.wg.Done(); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); e.wg.Wait(); srv.Close() })
	cred, err := control.LoadCredential(filepath.Join(dir, "server", control.FileOperator))
	if err != nil {
		t.Fatal(err)
	}
	if e.operator, err = control.NewClient(srv.URL(), srv.CA.Bundle(), cred); err != nil {
		t.Fatal(err)
	}

	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.idpKey = k
	e.idp = authntest.NewIDP(t, authntest.PubJWK(k, "k1", "ES256"))

	e.keys = authn.NewMemoryAPIKeyStore()
	e.apiKey = e.addKey("shop", []string{authn.APIKeyScopeAll}, time.Time{})

	e.orders = e.service("orders")
	e.catalog = e.service("catalog")
	e.writeConfig(fmt.Sprintf(resources, e.orders.addr, e.catalog.addr, e.idp.URL))
	e.orders.start(e)
	e.catalog.start(e)

	cert, pool := selfSigned(t)
	e.events = &audit.Recorder{}
	cfg := gateway.Config{
		Name: "edge", TrustDomain: td, Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
		TLS:        &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ConfigFile: e.config, Source: e.source(spiffeid.RequireFromSegments(td, "gateway", "edge")),
		APIKeys: e.keys, Events: e.events, Log: quiet(),
		Limits: gateway.Limits{Limits: pipeline.Limits{MaxBodyBytes: 1 << 20, ReadHeaderTimeout: time.Second}},
	}
	if mod != nil {
		mod(&cfg)
	}
	if e.gw, err = gateway.New(cfg); err != nil {
		t.Fatal(err)
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.gw.Run(ctx); err != nil {
			t.Errorf("gateway: %v", err)
		}
	}()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	e.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return e
}

func (e *edge) writeConfig(yaml string) {
	e.t.Helper()
	if err := os.WriteFile(e.config, []byte(yaml), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *edge) addKey(app string, scopes []string, expires time.Time) string {
	e.t.Helper()
	plain, rec, err := authn.NewAPIKey(app, scopes, time.Time{})
	if err != nil {
		e.t.Fatal(err)
	}
	rec.Expires = expires // may be in the past, which NewAPIKey refuses
	if err := e.keys.Add(rec); err != nil {
		e.t.Fatal(err)
	}
	return plain
}

// source enrolls a workload identity through the real API and keeps it
// renewed and following the trust feed until the test ends.
func (e *edge) source(id spiffeid.ID) *identity.Source {
	e.t.Helper()
	src := controltest.Enroll(e.t, e.srv, id)
	e.wg.Add(1)
	go func() { defer e.wg.Done(); _ = src.Run(e.ctx) }()
	return src
}

func (e *edge) service(name string) *service {
	e.t.Helper()
	return &service{name: name, app: newRecorder(e.t), events: &audit.Recorder{}, addr: freeAddr(e.t)}
}

func (s *service) start(e *edge) {
	e.t.Helper()
	var err error
	s.sc, err = sidecar.New(sidecar.Config{
		Service: s.name, TrustDomain: td, Listen: s.addr, App: s.app.addr, ConfigFile: e.config,
		Source: e.source(spiffeid.RequireFromSegments(td, "svc", s.name)), Log: quiet(), Events: s.events,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.wg.Add(1)
	go func() { defer e.wg.Done(); _ = s.sc.Run(e.ctx) }()
}

// url is the gateway's URL for path.
func (e *edge) url(path string) string { return "https://localhost:" + port(e.gw.Addr()) + path }

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// jwt signs a valid token for sub with the given scope and overrides.
func (e *edge) jwt(sub, scope string, with map[string]any) string {
	e.t.Helper()
	now := time.Now()
	claims := map[string]any{"iss": e.idp.URL, "sub": sub, "aud": "ward-edge", "exp": now.Add(5 * time.Minute).Unix(),
		"iat": now.Add(-time.Minute).Unix(), "scope": scope}
	for k, v := range with {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return authntest.Sign(e.t, e.idpKey, "ES256", "k1", nil, claims)
}

// do sends a request with an optional API key and bearer token.
func (e *edge) do(method, path, apiKey, bearer string, hdr map[string]string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url(path), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if apiKey != "" {
		req.Header.Set("X-Api-Key", apiKey)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

func bodyOf(r *http.Response) string { b, _ := io.ReadAll(r.Body); return string(b) }

// recorder is an app that records every request it receives.
type recorder struct {
	addr string
	mu   sync.Mutex
	seen []*http.Request
}

func newRecorder(t testing.TB) *recorder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{addr: l.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		r.seen = append(r.seen, req)
		r.mu.Unlock()
		fmt.Fprintf(w, "app saw %s %s user=%s app=%s", req.Method, req.URL.Path, req.Header.Get("X-Ward-User"), req.Header.Get("X-Ward-App"))
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *recorder) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.seen) }

func (r *recorder) last() *http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		return nil
	}
	return r.seen[len(r.seen)-1]
}

func freeAddr(t testing.TB) string {
	t.Helper()
	return testport.Addr(t)
}

// selfSigned makes the gateway's edge certificate for localhost.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

var _ = ratelimit.Limit{}
