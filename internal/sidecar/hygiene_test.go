package sidecar_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/proxy/proxytest"
)

// rawHead is an HTTP/1.1 request head for path with the given fields.
func rawHead(method, path string, fields [][2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: orders\r\n", method, path)
	for _, f := range fields {
		fmt.Fprintf(&b, "%s: %s\r\n", f[0], f[1])
	}
	b.WriteString("\r\n")
	return b.String()
}

// h2Client speaks HTTP/2 over mutual TLS to orders' sidecar as catalog.
func h2Client(t *testing.T, ts *twoServices) *http.Client {
	t.Helper()
	cfg := ts.catalog.src.ClientTLSConfig(identity.AuthorizeID(ts.orders.src.Current().ID))
	cfg.NextProtos = []string{"h2"}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// doH2 sends a request over HTTP/2 with header fields spelled as given.
func doH2(t *testing.T, c *http.Client, ts *twoServices, path string, fields [][2]string) int {
	t.Helper()
	req, err := http.NewRequest("GET", "https://"+ts.orders.sc.InboundAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "orders"
	for _, f := range fields {
		req.Header[f[0]] = append(req.Header[f[0]], f[1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("the request went over %s, not HTTP/2", resp.Proto)
	}
	return resp.StatusCode
}

// TestHTTP2MeetsTheSameHygiene: issue 12 finding 3. Every hostile request
// of the shared table is refused alike over HTTP/1.1 and HTTP/2 between
// services, before policy runs, and the app sees none of them.
func TestHTTP2MeetsTheSameHygiene(t *testing.T) {
	ts := startTwo(t)
	c := h2Client(t, ts)
	for _, h := range proxytest.HostileRequests() {
		t.Run(h.Name, func(t *testing.T) {
			path := "/orders/1" + h.Path
			before := ts.orders.app.count()
			if got := rawTLS(t, ts, rawHead("GET", path, h.Header)); !strings.HasPrefix(got, strconv.Itoa(h.Status)) {
				t.Errorf("HTTP/1.1: %s, want %d", got, h.Status)
			}
			if got := doH2(t, c, ts, path, h.Header); got != h.Status {
				t.Errorf("HTTP/2: %d, want %d", got, h.Status)
			}
			if n := ts.orders.app.count(); n != before {
				t.Errorf("the app saw %d hostile requests", n-before)
			}
		})
	}
	var refused int
	for _, ev := range ts.orders.events.Events() {
		if ev.Decision == "deny" && ev.Reason == "malformed_request" && ev.Actor == "spiffe://example.org/svc/catalog" {
			refused++
		}
	}
	if want := 2 * len(proxytest.HostileRequests()); refused != want {
		t.Errorf("%d refusals audited, want %d", refused, want)
	}
	if got := doH2(t, c, ts, "/orders/1", nil); got != http.StatusOK {
		t.Fatalf("clean HTTP/2 request: %d", got)
	}
}

// TestWardHeadersSurviveConnection: issue 12 finding 7. A peer's
// Connection header naming Ward's headers cannot keep them from the app.
func TestWardHeadersSurviveConnection(t *testing.T) {
	ts := startTwo(t)
	status := rawTLS(t, ts, rawHead("GET", "/orders/1", [][2]string{{"Connection", "X-Ward-Peer-Id, X-Ward-Request-Id"}}))
	if !strings.HasPrefix(status, "200") {
		t.Fatalf("status %s", status)
	}
	h := ts.orders.app.last().Header
	if h.Get("X-Ward-Peer-Id") != "spiffe://example.org/svc/catalog" || len(h.Get("X-Ward-Request-Id")) != 24 {
		t.Fatalf("the app did not get Ward's headers: %v", h)
	}
}

// TestAppReceivesTheAuthorizedPath: issue 12 finding 10. Between two
// sidecars (the caller's outbound, the callee's inbound) and straight to
// the inbound side, the app gets exactly the path policy decided on.
func TestAppReceivesTheAuthorizedPath(t *testing.T) {
	ts := startTwo(t)
	out := ts.catalog.outbound()
	for _, p := range []string{"/orders/a%20b", "/orders/caf%C3%A9", "/orders/x%22y"} {
		status, body, _ := get(t, out, "GET", "http://orders"+p, nil)
		if status != http.StatusOK {
			t.Errorf("GET %s through two sidecars: %d %s", p, status, body)
		} else if got := ts.orders.app.last().URL.EscapedPath(); got != p {
			t.Errorf("GET %s through two sidecars: the app got %q", p, got)
		}
		if status := rawTLS(t, ts, rawHead("GET", p, nil)); !strings.HasPrefix(status, "200") {
			t.Errorf("GET %s: %s", p, status)
		} else if got := ts.orders.app.last().URL.EscapedPath(); got != p {
			t.Errorf("GET %s: the app got %q", p, got)
		}
	}
	before := ts.orders.app.count()
	if status, _, _ := get(t, out, "GET", "http://orders/orders/a%2Fb", nil); status != http.StatusBadRequest {
		t.Errorf("GET /orders/a%%2Fb through two sidecars: %d, want 400", status)
	}
	if ts.orders.app.count() != before {
		t.Error("the app saw an ambiguous path")
	}
}

// TestConditionsNeverSeeForgedWardHeaders: issue 12 finding 11. A mesh
// caller's headers posing as Ward's, in any spelling, are stripped before
// policy runs: request.headers in a condition never holds them.
func TestConditionsNeverSeeForgedWardHeaders(t *testing.T) {
	m := newMesh(t)
	ordersAddr, catalogAddr := freeAddr(t), freeAddr(t)
	m.writeConfig(meshYAML(ordersAddr, catalogAddr) + `    - from: [svc/catalog]
      methods: [GET]
      paths: ["/staff/*"]
      when: '"x-ward-user" in request.headers && request.headers["x-ward-user"] == "admin"'
`)
	ts := &twoServices{m: m}
	ts.orders = m.sidecar("orders", ordersAddr, newRecorder(t, nil), nil)
	ts.catalog = m.sidecar("catalog", catalogAddr, newRecorder(t, nil), nil)
	c := h2Client(t, ts)
	for _, f := range proxytest.Forged {
		if got := rawTLS(t, ts, rawHead("GET", "/staff/x", [][2]string{{f[0], "admin"}})); !strings.HasPrefix(got, "403") {
			t.Errorf("%s: admin over HTTP/1.1: %s", f[0], got)
		}
		if got := doH2(t, c, ts, "/staff/x", [][2]string{{f[0], "admin"}}); got != http.StatusForbidden {
			t.Errorf("%s: admin over HTTP/2: %d", f[0], got)
		}
	}
	if n := ts.orders.app.count(); n != 0 {
		t.Errorf("a forged header satisfied a condition %d times", n)
	}
}

// TestHTTP2BodiesMeetTheBodyLimit: issue 12 finding 3 (the same limits).
// A body over the Service's limits.body is refused alike over HTTP/1.1
// and HTTP/2, declared or streamed, and never reaches the app.
func TestHTTP2BodiesMeetTheBodyLimit(t *testing.T) {
	m := newMesh(t)
	ordersAddr, catalogAddr := freeAddr(t), freeAddr(t)
	m.writeConfig(strings.Replace(meshYAML(ordersAddr, catalogAddr), fmt.Sprintf("endpoints: [%q]}", ordersAddr),
		fmt.Sprintf("endpoints: [%q], limits: {body: 1KiB}}", ordersAddr), 1))
	ts := &twoServices{m: m}
	ts.orders = m.sidecar("orders", ordersAddr, newRecorder(t, nil), nil)
	ts.catalog = m.sidecar("catalog", catalogAddr, newRecorder(t, nil), nil)
	c := h2Client(t, ts)
	big := strings.Repeat("b", 4<<10)
	if got := rawTLS(t, ts, "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nContent-Length: 4096\r\n\r\n"+big); !strings.HasPrefix(got, "413") {
		t.Errorf("HTTP/1.1: %s, want 413", got)
	}
	for _, declared := range []bool{true, false} {
		req, _ := http.NewRequest("GET", "https://"+ts.orders.sc.InboundAddr()+"/orders/1", strings.NewReader(big))
		req.Host = "orders"
		if !declared {
			req.ContentLength = -1 // streamed, no Content-Length
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("HTTP/2, length declared %v: %s %d, want 413", declared, resp.Proto, resp.StatusCode)
		}
	}
	if n := ts.orders.app.count(); n != 0 {
		t.Errorf("the app saw %d requests with a body over the limit", n)
	}
}
