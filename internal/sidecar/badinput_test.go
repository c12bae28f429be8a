package sidecar_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/identity"
)

// rawTLS sends raw bytes over mutual TLS (HTTP/1.1) as catalog, which may
// GET /orders/*, and returns what came back.
func rawTLS(t *testing.T, ts *twoServices, raw string) string {
	t.Helper()
	cfg := ts.catalog.src.ClientTLSConfig(identity.AuthorizeID(ts.orders.src.Current().ID))
	cfg.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", ts.orders.sc.InboundAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return "write: " + err.Error()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "read: " + err.Error()
	}
	defer resp.Body.Close()
	return resp.Status
}

// TestDenyPathEncodings: /admin is not allowed to catalog; no spelling of
// it reaches the app as /admin.
func TestDenyPathEncodings(t *testing.T) {
	ts := startTwo(t)
	paths := []string{
		"/admin", "/orders/../admin", "/orders/%2e%2e/admin", "/orders/%2E%2E/admin", "/orders/.%2e/admin",
		"/orders/%2e%2e%2fadmin", "/orders/..%2Fadmin", "/orders/%252e%252e/admin", "/orders/..;/admin",
		"/orders/..%3B/admin", "/orders/..\\admin", "/orders/%5c../admin", "//admin", "/./admin", "/orders/./../admin",
		"/orders/%00/../../admin", "/orders/%c0%ae%c0%ae/admin", "/orders/\uff0e\uff0e/admin", "/orders/%ef%bc%8e%ef%bc%8e/admin",
		"/%61dmin", "/ADMIN", "/orders/../../admin", "/orders/%u002e%u002e/admin",
	}
	for _, p := range paths {
		status := rawTLS(t, ts, "GET "+p+" HTTP/1.1\r\nHost: orders\r\n\r\n")
		if strings.HasPrefix(status, "200") {
			t.Errorf("GET %s: %s", p, status)
		}
	}
	for _, r := range ts.orders.app.seen {
		if strings.Contains(strings.ToLower(r.URL.Path), "admin") {
			t.Errorf("app saw %s", r.URL.Path)
		}
	}
	// The allowed path still works, and the app sees it normalized.
	if status := rawTLS(t, ts, "GET /orders/a/%2e/b HTTP/1.1\r\nHost: orders\r\n\r\n"); !strings.HasPrefix(status, "200") {
		t.Fatalf("allowed path: %s", status)
	}
	if got := ts.orders.app.last().URL.Path; got != "/orders/a/b" {
		t.Errorf("app saw %q, want the normalized /orders/a/b", got)
	}
}

// TestSmuggling: ambiguous HTTP/1.1 framing is refused before any policy
// runs, and the app sees nothing.
func TestSmuggling(t *testing.T) {
	ts := startTwo(t)
	big := strings.Repeat("a", 64<<10)
	cases := map[string]string{
		"CL with TE":           "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"TE with CL":           "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
		"duplicate CL":         "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
		"bad chunking":         "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		"chunk size too short": "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
		"TE obfuscated":        "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: xchunked\r\n\r\n",
		"NUL in header":        "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nX-A: a\x00b\r\n\r\n",
		"underscore header":    "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nX_Ward_Peer_Id: spiffe://example.org/svc/admin\r\n\r\n",
		"obs-fold":             "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nX-A: a\r\n b\r\n\r\n",
		"oversized header":     "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nX-Big: " + big + "\r\n\r\n",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			before := ts.orders.app.count()
			status := rawTLS(t, ts, raw)
			if strings.HasPrefix(status, "2") {
				t.Fatalf("accepted: %s", status)
			}
			if ts.orders.app.count() != before {
				t.Fatalf("the app saw it (%s)", status)
			}
		})
	}
	refusals := 0
	for _, e := range ts.orders.events.Events() {
		if e.Decision == "deny" && e.Reason == "malformed_request" && e.Actor == "spiffe://example.org/svc/catalog" {
			refusals++
		}
	}
	if refusals < len(cases)-2 { // bad chunking is found by the body reader, after the head passed
		t.Errorf("%d malformed requests audited, want at least %d", refusals, len(cases)-2)
	}
}

// TestServicePeerCannotForgeGatewayHeaders: the client address and request
// id a gateway vouches for are taken only with its verified identity token;
// a service sending them itself over mutual TLS is not believed.
func TestServicePeerCannotForgeGatewayHeaders(t *testing.T) {
	ts := startTwo(t)
	status := rawTLS(t, ts, "GET /orders/1 HTTP/1.1\r\nHost: orders\r\nX-Ward-Client-Ip: 6.6.6.6\r\nX-Ward-Request-Id: forged-id\r\nX-Ward-User: admin\r\n\r\n")
	if !strings.HasPrefix(status, "200") {
		t.Fatalf("status %s", status)
	}
	h := ts.orders.app.last().Header
	if h.Get("X-Ward-Client-Ip") != "" || h.Get("X-Ward-User") != "" || h.Get("X-Ward-Request-Id") == "forged-id" {
		t.Fatalf("forged gateway headers reached the app: %v", h)
	}
	for _, ev := range ts.orders.events.Events() {
		if ev.RequestID == "forged-id" {
			t.Fatalf("the audit record took the forged request id: %+v", ev)
		}
	}
}
