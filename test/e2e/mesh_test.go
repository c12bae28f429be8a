package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/testport"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	return testport.Addr(t)
}

// startProcess runs the ward binary until the test ends.
func startProcess(t *testing.T, dir string, args ...string) *bytes.Buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, wardBin, args...)
	cmd.Dir = dir
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("ward %s log:\n%s", args[0], logs.String())
		}
	})
	return &logs
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s", addr)
		}
	}
}

// meshPair is a server and two sidecar processes, orders and catalog,
// under an AccessPolicy that lets catalog GET /orders/*. The sidecars
// follow the server and register their own addresses: the Services name
// none. The test plays catalog's app through catalogOut; the app given to
// startMeshPair answers behind orders.
type meshPair struct {
	dir        string // the test's directory; a sidecar's data dir is dir/NAME
	ordersIn   string // orders' inbound (mutual TLS) address
	catalogOut string // catalog's outbound proxy, the app's HTTP_PROXY
}

func startMeshPair(t *testing.T, app http.Handler) meshPair {
	t.Helper()
	return startMeshPairWith(t, app)
}

// startMeshPairWith is startMeshPair with extra flags for orders' sidecar.
func startMeshPairWith(t *testing.T, app http.Handler, ordersFlags ...string) meshPair {
	t.Helper()
	data := startServer(t)
	dir := filepath.Dir(data)
	var info struct{ Server string }
	raw, _ := os.ReadFile(filepath.Join(data, "client.json"))
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	token := func(name string) string {
		out, err := ward(t, dir, "token", "create", "--id", "spiffe://example.org/svc/"+name, "--data-dir", data)
		if err != nil {
			t.Fatalf("token: %v\n%s", err, out)
		}
		return strings.SplitN(out, "\n", 2)[0]
	}
	srv := &http.Server{Handler: app}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(appLn) }()
	t.Cleanup(func() { srv.Close() })

	ordersIn, catalogIn, catalogOut := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(cfg, []byte(`apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {protocol: http}
---
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {protocol: http}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
    - from: [svc/catalog]
      methods: [GET]
      paths: ["/orders/*"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := ward(t, dir, "apply", "-f", cfg, "--data-dir", data); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	common := []string{"--server", info.Server, "--bundle", filepath.Join(data, "bundle.pem")}
	startProcess(t, dir, append([]string{"sidecar", "--service", "orders", "--listen", ordersIn, "--app", appLn.Addr().String(),
		"--outbound", "", "--token", token("orders"), "--data-dir", filepath.Join(dir, "orders")}, append(common, ordersFlags...)...)...)
	startProcess(t, dir, append([]string{"sidecar", "--service", "catalog", "--listen", catalogIn, "--app", freeAddr(t),
		"--outbound", catalogOut, "--token", token("catalog"), "--data-dir", filepath.Join(dir, "catalog")}, common...)...)
	waitListening(t, ordersIn)
	waitListening(t, catalogOut)
	waitRegistered(t, dir, data, "orders", ordersIn)
	waitRegistered(t, dir, data, "catalog", catalogIn)
	// catalog's sidecar has orders' instance once a DELETE, which the
	// policy refuses before the app sees it, meets orders' sidecar.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: catalogOut}), DisableKeepAlives: true}}
	if status := waitRoutable(t, func() int {
		req, _ := http.NewRequest("DELETE", "http://orders/orders/ready", nil)
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}); status != http.StatusForbidden {
		t.Fatalf("DELETE through catalog's sidecar: %d, want orders' 403", status)
	}
	return meshPair{dir: dir, ordersIn: ordersIn, catalogOut: catalogOut}
}

// TestMeshWithSidecars runs the real binary: a server and two sidecars,
// orders and catalog, with the test as catalog's app and a recording app
// behind orders.
func TestMeshWithSidecars(t *testing.T) {
	seen := make(chan string, 10)
	m := startMeshPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Method + " " + r.URL.Path
		fmt.Fprintf(w, "orders saw %s from %s", r.URL.Path, r.Header.Get("X-Ward-Peer-Id"))
	}))
	dir, catalogOut := m.dir, m.catalogOut

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: catalogOut})}}
	call := func(method, u string) (int, string) {
		req, _ := http.NewRequest(method, u, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := call("GET", "http://orders/orders/7"); status != 200 || body != "orders saw /orders/7 from spiffe://example.org/svc/catalog" {
		t.Fatalf("allowed: %d %q", status, body)
	}
	if got := <-seen; got != "GET /orders/7" {
		t.Fatalf("app saw %q", got)
	}
	if status, body := call("DELETE", "http://orders/orders/7"); status != 403 || !strings.HasPrefix(body, `{"error":"forbidden","reason":"no_rule_matches","request_id":"`) {
		t.Fatalf("denied: %d %q", status, body)
	}
	select {
	case got := <-seen:
		t.Fatalf("a denied request reached the app: %s", got)
	default:
	}
	// The SVIDs were persisted with mode 0600 keys.
	fi, err := os.Stat(filepath.Join(dir, "orders", "key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("sidecar key: %v %v", fi, err)
	}
}
