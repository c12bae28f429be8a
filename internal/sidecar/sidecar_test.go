package sidecar_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/identity"
)

// meshYAML: catalog may GET /orders/*, and /health; nobody else may call
// orders; nobody may call catalog.
func meshYAML(ordersAddr, catalogAddr string) string {
	return fmt.Sprintf(`apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {protocol: http, endpoints: [%q]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {protocol: http, endpoints: [%q]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
    - from: [svc/catalog]
      methods: [GET]
      paths: ["/orders/*", "/health"]
`, ordersAddr, catalogAddr)
}

type twoServices struct {
	m               *mesh
	orders, catalog *node
}

func startTwo(t testing.TB) *twoServices {
	t.Helper()
	m := newMesh(t)
	ordersAddr, catalogAddr := freeAddr(t), freeAddr(t)
	m.writeConfig(meshYAML(ordersAddr, catalogAddr))
	ts := &twoServices{m: m}
	ts.orders = m.sidecar("orders", ordersAddr, newRecorder(t, nil), nil)
	ts.catalog = m.sidecar("catalog", catalogAddr, newRecorder(t, nil), nil)
	return ts
}

func get(t *testing.T, c *http.Client, method, url string, hdr http.Header) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func TestMeshCall(t *testing.T) {
	ts := startTwo(t)
	c := ts.catalog.outbound()

	status, body, _ := get(t, c, "GET", "http://orders/orders/42", http.Header{
		"X-Ward-Peer-Id": {"spiffe://example.org/svc/admin"}, "X-Ward-Anything": {"x"}, "Proxy": {"http://evil:1"},
		"X-Ward-Identity": {"a token the app received and forwards"},
	})
	if status != 200 || body != "app saw GET /orders/42 from spiffe://example.org/svc/catalog" {
		t.Fatalf("allowed call: %d %q", status, body)
	}
	if h := ts.orders.app.last().Header; h.Get("X-Ward-Anything") != "" || h.Get("Proxy") != "" || len(h.Values("X-Ward-Peer-Id")) != 1 {
		t.Errorf("forged headers reached the app: %v", h)
	}
	if got := ts.orders.app.last().Header.Get("X-Ward-Request-Id"); len(got) != 24 {
		t.Errorf("request id %q", got)
	}

	before := ts.orders.app.count()
	status, body, hdr := get(t, c, "POST", "http://orders/orders/42", nil)
	// The same JSON refusal as the gateway's; the policy's name and its
	// message stay in the record.
	if status != http.StatusForbidden || !regexp.MustCompile(`^\{"error":"forbidden","reason":"no_rule_matches","request_id":"[0-9a-f]{24}"\}\n$`).MatchString(body) ||
		hdr.Get("X-Ward-Deny-Reason") != "no_rule_matches" || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("denied call: %d %q %v", status, body, hdr)
	}
	if ts.orders.app.count() != before {
		t.Fatal("a denied request reached the app")
	}
	// Nobody may call catalog: no policy, default deny.
	status, body, _ = get(t, ts.orders.outbound(), "GET", "http://catalog/anything", nil)
	if status != http.StatusForbidden || ts.catalog.app.count() != 0 {
		t.Fatalf("call without policy: %d %q", status, body)
	}
	// Unknown service.
	if status, _, _ = get(t, c, "GET", "http://payments/x", nil); status != http.StatusBadGateway {
		t.Fatalf("unknown service: %d", status)
	}
	// Every decision is audited.
	var allow, deny int
	for _, e := range ts.orders.events.Events() {
		if e.Type == "sidecar.request" {
			if e.Decision == "allow" {
				allow++
			} else {
				deny++
			}
		}
	}
	if allow != 1 || deny != 1 {
		t.Errorf("audit: %d allow, %d deny events", allow, deny)
	}
}

// selfSigned returns a TLS certificate for id from a CA Ward does not know.
func foreignCert(t *testing.T, id string, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		URIs: []*url.URL{u}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestInboundRefusals: nothing that is not a valid, unrevoked SVID allowed
// by policy gets to the app.
func TestInboundRefusals(t *testing.T) {
	ts := startTwo(t)
	addr := ts.orders.sc.InboundAddr()
	intruder := ts.m.source("intruder")

	tlsGet := func(cfg *tls.Config, path string) (int, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get("https://" + addr + path)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	expectOrders := identity.AuthorizeID(ts.orders.src.Current().ID)
	insecure := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, Certificates: certs, MinVersion: tls.VersionTLS12} //nolint:gosec // attacker's client
	}
	cases := []struct {
		name       string
		do         func() (int, error)
		wantStatus int // 0: connection refused at TLS
	}{
		{"plaintext HTTP", func() (int, error) {
			c := &http.Client{Timeout: 5 * time.Second}
			resp, err := c.Get("http://" + addr + "/orders/1")
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}, 0},
		{"TLS without client certificate", func() (int, error) { return tlsGet(insecure(), "/orders/1") }, 0},
		{"certificate from another CA", func() (int, error) {
			return tlsGet(insecure(foreignCert(t, "spiffe://example.org/svc/catalog", time.Now().Add(time.Hour))), "/orders/1")
		}, 0},
		{"expired certificate", func() (int, error) {
			return tlsGet(insecure(foreignCert(t, "spiffe://example.org/svc/catalog", time.Now().Add(-time.Minute))), "/orders/1")
		}, 0},
		{"TLS 1.2 only", func() (int, error) {
			cfg := intruder.ClientTLSConfig(expectOrders)
			cfg.MaxVersion = tls.VersionTLS12
			return tlsGet(cfg, "/orders/1")
		}, 0},
		{"valid SVID, not allowed by policy", func() (int, error) { return tlsGet(intruder.ClientTLSConfig(expectOrders), "/orders/1") }, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.orders.app.count()
			status, err := tc.do()
			if tc.wantStatus == 0 && err == nil && status < 400 {
				t.Fatalf("accepted: status %d", status)
			}
			if tc.wantStatus != 0 && status != tc.wantStatus {
				t.Fatalf("status %d (%v), want %d", status, err, tc.wantStatus)
			}
			if ts.orders.app.count() != before {
				t.Fatal("the app saw the request")
			}
		})
	}
}

// TestOutboundChecksServerIdentity: the sidecar refuses a server that is
// not the service it meant to reach, even with a valid SVID.
func TestOutboundChecksServerIdentity(t *testing.T) {
	m := newMesh(t)
	ordersAddr, catalogAddr := freeAddr(t), freeAddr(t)
	// orders' endpoint actually points at catalog's sidecar.
	m.writeConfig(meshYAML(catalogAddr, catalogAddr))
	m.sidecar("orders", ordersAddr, newRecorder(t, nil), nil)
	catalog := m.sidecar("catalog", catalogAddr, newRecorder(t, nil), nil)
	status, body, _ := get(t, catalog.outbound(), "GET", "http://orders/orders/1", nil)
	// The app is told a reason code; the cause (the identity the server
	// proved) is for the operator's log.
	if status != http.StatusBadGateway || body != "ward: upstream unavailable (upstream_unreachable)\n" {
		t.Fatalf("impostor server: %d %q", status, body)
	}
	if catalog.app.count() != 0 {
		t.Fatal("request reached the impostor's app")
	}
}

// TestRevokedPeerRefused: after revocation, the peer is refused within
// 5 seconds, on new connections and on one it already holds open.
func TestRevokedPeerRefused(t *testing.T) {
	ts := startTwo(t)
	c := ts.catalog.outbound()
	if status, _, _ := get(t, c, "GET", "http://orders/orders/1", nil); status != 200 {
		t.Fatalf("before revocation: %d", status)
	}
	if _, err := ts.m.operator.Revoke(context.Background(), control.RevokeRequest{Serial: ts.catalog.src.Current().Serial()}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		status, _, _ := get(t, c, "GET", "http://orders/orders/1", nil)
		if status == http.StatusForbidden {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("revoked peer still accepted after %v", time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("revoked peer refused after %v", time.Since(start))
}

// TestL4 carries a TCP stream over mTLS to a tcp service, under identity
// authorization.
func TestL4(t *testing.T) {
	m := newMesh(t)
	dbAddr, apiAddr, otherAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	m.writeConfig(fmt.Sprintf(`apiVersion: ward/v1
kind: Service
metadata: {name: db}
spec: {protocol: tcp, endpoints: [%q]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: api}
spec: {endpoints: [%q]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: other}
spec: {endpoints: [%q]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: db-callers}
spec:
  target: db
  rules: [{from: [svc/api]}]
`, dbAddr, apiAddr, otherAddr))
	echo, accepted := tcpEcho(t)
	dbApp := &recorder{addr: echo}
	m.sidecar("db", dbAddr, dbApp, nil)
	apiUp, otherUp := freeAddr(t), freeAddr(t)
	m.sidecar("api", apiAddr, newRecorder(t, nil), map[string]string{"db": apiUp})
	m.sidecar("other", otherAddr, newRecorder(t, nil), map[string]string{"db": otherUp})

	conn, err := net.Dial("tcp", apiUp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "SELECT 1;\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "SELECT 1;\n" {
		t.Fatalf("echo through L4: %q %v", line, err)
	}
	n := accepted()

	// other is not allowed: the connection is closed, the app sees nothing.
	conn2, err := net.Dial("tcp", otherUp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	_ = conn2.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn2, "DROP TABLE x;\n")
	if _, err := bufio.NewReader(conn2).ReadString('\n'); err == nil {
		t.Fatal("unauthorized L4 connection got an answer")
	}
	// Garbage on the L4 port itself.
	raw, err := net.Dial("tcp", dbAddr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = raw.Write([]byte("\x16\x03\x01garbage garbage garbage\r\n\r\n"))
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.ReadAll(raw)
	raw.Close()
	time.Sleep(100 * time.Millisecond)
	if accepted() != n {
		t.Fatalf("the app accepted %d connections after the allowed one", accepted()-n)
	}
}

// tcpEcho runs a line echo server and counts accepted connections.
func tcpEcho(t *testing.T) (string, func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	count := make(chan int, 1)
	count <- 0
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := <-count
			count <- n + 1
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return l.Addr().String(), func() int { n := <-count; count <- n; return n }
}
