package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/authn/authntest"
	"github.com/wardsec/ward/internal/ratelimit/redistest"
)

// edgeSetup is a real `ward server`, a recording app behind a real
// `ward sidecar` (orders) and an identity provider, ready for gateways.
type edgeSetup struct {
	t       *testing.T
	srv     *serverProc
	dir     string
	data    string
	server  string
	config  string
	idp     *authntest.IDP
	idpKey  *ecdsa.PrivateKey
	seen    chan *http.Request
	roots   *x509.CertPool
	client  *http.Client
	gateway int
	// ordersIn is orders' sidecar's mutual TLS address.
	ordersIn string
	// app is the address of the app behind orders.
	app string
}

const edgeResources = `apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {endpoints: [%q]}
---
apiVersion: ward/v1
kind: Issuer
metadata: {name: corp}
spec: {issuerURL: %q, audiences: [ward-edge], algorithms: [ES256]}
---
apiVersion: ward/v1
kind: Route
metadata: {name: orders}
spec:
  pathPrefix: /orders
  service: orders
  auth: {apiKey: required, user: jwt, issuers: [corp]}
  rateLimit: {key: apikey, rate: 20/h, burst: 20}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
    - from: [gateway/*]
      methods: [GET]
      paths: ["/orders/*"]
      when: '"orders:read" in user.scopes'
`

func newEdgeSetup(t *testing.T) *edgeSetup {
	t.Helper()
	// Fixed addresses, so that the server can be restarted where the
	// proxies expect it.
	srv := startServerProc(t, freeAddr(t), freeAddr(t))
	e := &edgeSetup{t: t, srv: srv, data: srv.dataDir, seen: make(chan *http.Request, 100)}
	e.dir = filepath.Dir(e.data)
	var info struct{ Server string }
	raw, _ := os.ReadFile(filepath.Join(e.data, "client.json"))
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	e.server = info.Server
	e.idpKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.idp = authntest.NewIDP(t, authntest.PubJWK(e.idpKey, "k1", "ES256"))

	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.seen <- r
		fmt.Fprintf(w, "orders saw %s for user %s of app %s", r.URL.Path, r.Header.Get("X-Ward-User"), r.Header.Get("X-Ward-App"))
	})}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Serve(appLn) }()
	t.Cleanup(func() { app.Close() })
	e.app = appLn.Addr().String()

	ordersIn := freeAddr(t)
	e.ordersIn = ordersIn
	e.config = filepath.Join(e.dir, "edge.yaml")
	if err := os.WriteFile(e.config, []byte(fmt.Sprintf(edgeResources, ordersIn, e.idp.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	startProcess(t, e.dir, "sidecar", "--service", "orders", "--listen", ordersIn, "--app", appLn.Addr().String(), "--outbound", "",
		"--token", e.token("spiffe://example.org/svc/orders"), "--data-dir", filepath.Join(e.dir, "orders"),
		"--server", e.server, "--bundle", filepath.Join(e.data, "bundle.pem"), "--config", e.config)
	waitListening(t, ordersIn)

	pem, err := os.ReadFile(filepath.Join(e.data, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	e.roots = x509.NewCertPool()
	e.roots.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	e.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return e
}

func (e *edgeSetup) token(id string) string {
	e.t.Helper()
	out, err := ward(e.t, e.dir, "token", "create", "--id", id, "--data-dir", e.data)
	if err != nil {
		e.t.Fatalf("token: %v\n%s", err, out)
	}
	return strings.SplitN(out, "\n", 2)[0]
}

// startGateway runs a `ward gateway` with its certificate from Ward's CA
// and returns its HTTPS address.
func (e *edgeSetup) startGateway(extra ...string) string {
	e.t.Helper()
	return e.startGatewayTLS([]string{"--tls-ward-ca"}, extra...)
}

// startGatewayTLS runs a `ward gateway` with the certificate flags tlsArgs.
func (e *edgeSetup) startGatewayTLS(tlsArgs []string, extra ...string) string {
	e.t.Helper()
	e.gateway++
	name := fmt.Sprintf("edge%d", e.gateway)
	addr := freeAddr(e.t)
	args := append([]string{"gateway", "--name", name, "--listen", addr, "--config", e.config},
		tlsArgs...)
	args = append(args, "--token", e.token("spiffe://example.org/gateway/"+name), "--data-dir", filepath.Join(e.dir, name),
		"--server", e.server, "--bundle", filepath.Join(e.data, "bundle.pem"))
	args = append(args, extra...)
	startProcess(e.t, e.dir, args...)
	waitListening(e.t, addr)
	return addr
}

func (e *edgeSetup) apiKey(app, routes string) string {
	e.t.Helper()
	out, err := ward(e.t, e.dir, "apikey", "create", "--app", app, "--routes", routes, "--data-dir", e.data)
	if err != nil {
		e.t.Fatalf("apikey create: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "wak_") {
			return strings.TrimSpace(line)
		}
	}
	e.t.Fatalf("no key in:\n%s", out)
	return ""
}

func (e *edgeSetup) jwt(sub, scope string, exp time.Duration) string {
	now := time.Now()
	return authntest.Sign(e.t, e.idpKey, "ES256", "k1", nil, map[string]any{
		"iss": e.idp.URL, "sub": sub, "aud": "ward-edge", "exp": now.Add(exp).Unix(), "iat": now.Add(-time.Minute).Unix(), "scope": scope})
}

// call sends GET path to the gateway at addr and returns the status, the
// deny reason and the body.
func (e *edgeSetup) call(addr, path, key, bearer string) (int, string, string) {
	e.t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	req, _ := http.NewRequest("GET", "https://localhost:"+port+path, nil)
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Ward-Deny-Reason"), string(b)
}

// waitReady waits until the gateway at addr has its API keys from the
// server: a request with key stops being 503.
func (e *edgeSetup) waitReady(addr, key string) {
	e.t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		req, _ := http.NewRequest("GET", "https://localhost:"+port+"/orders/", nil)
		req.Header.Set("X-Api-Key", key)
		resp, err := e.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized { // the key passed; the JWT is missing
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("gateway not ready: %v %v", resp, err)
		}
	}
}

// TestGatewayEndToEnd runs the real binary: a request with a valid API key
// and JWT reaches orders behind its sidecar; each missing or bad credential
// gets a clear 401/403 with its reason and the service sees nothing.
func TestGatewayEndToEnd(t *testing.T) {
	e := newEdgeSetup(t)
	key := e.apiKey("shop", "orders")
	other := e.apiKey("elsewhere", "catalog")
	gw := e.startGateway()
	e.waitReady(gw, key)

	status, _, body := e.call(gw, "/orders/7", key, e.jwt("alice", "orders:read", 5*time.Minute))
	if status != 200 || body != "orders saw /orders/7 for user alice of app shop" {
		t.Fatalf("allowed: %d %q", status, body)
	}
	if r := <-e.seen; r.Header.Get("Authorization") != "" || r.Header.Get("X-Api-Key") != "" || r.Header.Get("X-Ward-Identity") == "" {
		t.Fatalf("the service got the caller's credentials or no identity token: %v", r.Header)
	}
	refusals := []struct {
		name, key, jwt string
		status         int
		reason         string
	}{
		{"no API key", "", e.jwt("alice", "orders:read", 5*time.Minute), 401, "apikey_missing"},
		{"unknown API key", "wak_aaaaaaaa_" + strings.Repeat("A", 43), e.jwt("alice", "orders:read", 5*time.Minute), 401, "apikey_unknown"},
		{"key for another route", other, e.jwt("alice", "orders:read", 5*time.Minute), 403, "apikey_out_of_scope"},
		{"no JWT", key, "", 401, "jwt_missing"},
		{"expired JWT", key, e.jwt("alice", "orders:read", -time.Hour), 401, "jwt_expired"},
		{"forged JWT", key, authntest.Craft(t, map[string]any{"alg": "none"}, map[string]any{"iss": e.idp.URL, "sub": "alice"}, nil), 401, "jwt_alg_not_allowed"},
		{"no scope", key, e.jwt("bob", "profile", 5*time.Minute), 403, "no_rule_matches"},
	}
	for _, c := range refusals {
		status, reason, body := e.call(gw, "/orders/7", c.key, c.jwt)
		if status != c.status || reason != c.reason || !strings.Contains(body, `"reason":"`+c.reason+`"`) {
			t.Errorf("%s: %d %q %q, want %d %s", c.name, status, reason, body, c.status, c.reason)
		}
	}
	// A revoked key stops working once the gateway hears of it.
	prefix := strings.SplitN(strings.TrimPrefix(key, "wak_"), "_", 2)[0]
	if out, err := ward(t, e.dir, "apikey", "revoke", prefix, "--data-dir", e.data); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	start := time.Now()
	for {
		status, reason, _ := e.call(gw, "/orders/7", key, e.jwt("alice", "orders:read", 5*time.Minute))
		if status == 401 && reason == "apikey_revoked" {
			t.Logf("revocation reached the gateway in %v", time.Since(start).Round(time.Millisecond))
			break
		}
		if status != 200 || time.Since(start) > 10*time.Second {
			t.Fatalf("after revoke: %d %s", status, reason)
		}
		<-e.seen
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case r := <-e.seen:
		t.Fatalf("a refused request reached the service: %s", r.URL)
	default:
	}
}

// TestGatewaysShareRedisLimit: two gateway processes limit one API key
// through one real redis-server; together they admit exactly the burst.
func TestGatewaysShareRedisLimit(t *testing.T) {
	e := newEdgeSetup(t)
	redis := redistest.Addr(t)
	key := e.apiKey("shop", "orders")
	a := e.startGateway("--redis", redis)
	b := e.startGateway("--redis", redis)
	e.waitReady(a, key)
	e.waitReady(b, key)
	go func() {
		for range e.seen {
		}
	}()
	jwt := e.jwt("alice", "orders:read", 5*time.Minute)
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	for i := range 60 { // 3x the burst of 20, concurrently, half to each gateway
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := a
			if i%2 == 1 {
				addr = b
			}
			status, _, _ := e.call(addr, "/orders/1", key, jwt)
			mu.Lock()
			counts[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if counts[200] != 20 || counts[429] != 40 {
		t.Fatalf("statuses %v, want exactly 20×200 and 40×429", counts)
	}
	t.Logf("statuses across two gateways: %v", counts)
}

// TestGatewayDocWalkthrough runs the "Try it" block of docs/gateway.md as
// written and checks what the page says it shows.
func TestGatewayDocWalkthrough(t *testing.T) {
	need(t, "curl", "python3", "bash")
	block := docBlock(t, "docs/gateway.md", "## Try it")
	if !strings.Contains(block, "go build -o ward ./cmd/ward") {
		t.Fatal("the walk-through no longer starts with go build")
	}
	text := runWalkthrough(t, t.TempDir(), block)
	for _, want := range []string{"hello from catalog\n", `{"error":"unauthorized","reason":"apikey_missing","request_id":"`, "200 200 200 200 429 \n"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestGatewayFollowsServer: a gateway started without --config takes its
// Routes from the server, and a change applied there is enforced by the
// running gateway within a second.
func TestGatewayFollowsServer(t *testing.T) {
	e := newEdgeSetup(t)
	set := e.serverResources()
	if out, err := ward(t, e.dir, "apply", "-f", set, "--data-dir", e.data); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	e.startFollowingOrders()
	key := e.apiKey("shop", "orders")
	addr := freeAddr(t)
	gwArgs := []string{"gateway", "--name", "edge", "--listen", addr, "--tls-ward-ca",
		"--data-dir", filepath.Join(e.dir, "edge"), "--server", e.server, "--bundle", filepath.Join(e.data, "bundle.pem")}
	gw := startProc(t, e.dir, append(gwArgs, "--token", e.token("spiffe://example.org/gateway/edge"))...)
	waitListening(t, addr)
	e.waitReady(addr, key)
	jwt := e.jwt("alice", "orders:read", 5*time.Minute)
	if status, reason, body := e.call(addr, "/orders/7", key, jwt); status != 200 {
		t.Fatalf("before the change: %d %s %s", status, reason, body)
	}
	<-e.seen

	// The Route moves to /v2/orders: /orders is no route any more.
	raw, err := os.ReadFile(set)
	if err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(e.dir, "moved.yaml")
	if err := os.WriteFile(moved, []byte(strings.Replace(string(raw), "pathPrefix: /orders", "pathPrefix: /v2/orders", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := ward(t, e.dir, "apply", "-f", moved, "--base-version", "1", "--data-dir", e.data); err != nil || !strings.Contains(out, "~Route/orders") {
		t.Fatalf("apply the moved route: %v\n%s", err, out)
	}
	start := time.Now()
	for {
		status, reason, _ := e.call(addr, "/orders/7", key, jwt)
		if status == 404 && reason == "no_route" {
			break
		}
		if status == 200 {
			<-e.seen
		}
		if time.Since(start) > time.Second {
			t.Fatalf("a second after the apply the gateway still answers %d %s for /orders/7", status, reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("apply -> enforced by the gateway in %s", time.Since(start))
	if fi, err := os.Stat(filepath.Join(e.dir, "edge", "snapshot.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the gateway's snapshot.json: %v %v, want mode 0600", fi, err)
	}

	// The server goes away; the gateway keeps the moved Route and its API
	// keys, also after its own restart.
	enforced := func(when string) {
		t.Helper()
		if status, reason, _ := e.call(addr, "/orders/7", key, jwt); status != 404 || reason != "no_route" {
			t.Errorf("%s: /orders/7 answers %d %s, want 404 no_route", when, status, reason)
		}
		if status, reason, _ := e.call(addr, "/v2/orders/7", "", jwt); status != 401 || reason != "apikey_missing" {
			t.Errorf("%s: /v2/orders/7 without a key answers %d %s, want 401 apikey_missing", when, status, reason)
		}
		if status, reason, _ := e.call(addr, "/v2/orders/7", key, ""); status != 401 || reason != "jwt_missing" {
			t.Errorf("%s: /v2/orders/7 with the key and no JWT answers %d %s, want 401 jwt_missing (the key still known)", when, status, reason)
		}
	}
	e.srv.stop()
	enforced("with the server down")
	gw.stop()
	gw.args = gwArgs
	gw.start()
	waitListening(t, addr)
	enforced("after a restart without the server")
	if !strings.Contains(gw.logs.String(), "last good snapshot") {
		t.Errorf("the restarted gateway did not say it runs on its last good snapshot:\n%s", gw.logs)
	}
}
