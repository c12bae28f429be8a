package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/proxy/proxytest"
)

// rawHTTP1 sends one HTTP/1.1 request head over c and returns the status
// line and the body of the answer.
func rawHTTP1(t *testing.T, c *tls.Conn, head string) (string, string) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		return "write: " + err.Error(), ""
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "read: " + err.Error(), ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status, string(b)
}

func head(path, host string, fields [][2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", path, host)
	for _, f := range fields {
		fmt.Fprintf(&b, "%s: %s\r\n", f[0], f[1])
	}
	return b.String() + "\r\n"
}

func withFields(r *http.Request, fields [][2]string) *http.Request {
	for _, f := range fields {
		r.Header[f[0]] = append(r.Header[f[0]], f[1])
	}
	return r
}

// noneSeen fails if a request reached the app.
func noneSeen(t *testing.T, seen chan *http.Request, what string) {
	t.Helper()
	select {
	case r := <-seen:
		t.Errorf("%s reached the app (a path of %d bytes, X-Ward-User %q)", what, len(r.URL.Path), r.Header.Get("X-Ward-User"))
	default:
	}
}

// TestGatewayRequestHygieneEndToEnd runs the real binaries (server,
// gateway, orders' sidecar) for issue 12 findings 3, 7 and 10: HTTP/2 meets
// the HTTP/1.1 rules, a Connection header cannot strip Ward's headers, and
// the app receives exactly the path that was authorized.
func TestGatewayRequestHygieneEndToEnd(t *testing.T) {
	e := newEdgeSetup(t)
	key := e.apiKey("shop", "orders")
	gw := e.startGateway()
	e.waitReady(gw, key)
	_, port, _ := net.SplitHostPort(gw)
	creds := [][2]string{{"X-Api-Key", key}, {"Authorization", "Bearer " + e.jwt("alice", "orders:read", 5*time.Minute)}}
	dialH1 := func() *tls.Conn {
		c, err := tls.Dial("tcp", gw, &tls.Config{RootCAs: e.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	// Finding 3: the same refusals over HTTP/1.1 and HTTP/2.
	for _, h := range proxytest.HostileRequests() {
		fields := append(append([][2]string{}, creds...), h.Header...)
		if status, _ := rawHTTP1(t, dialH1(), head("/orders/7"+h.Path, "localhost", fields)); !strings.HasPrefix(status, strconv.Itoa(h.Status)) {
			t.Errorf("%s over HTTP/1.1: %s, want %d", h.Name, status, h.Status)
		}
		req, _ := http.NewRequest("GET", "https://localhost:"+port+"/orders/7"+h.Path, nil)
		resp, err := e.client.Do(withFields(req, fields))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != h.Status || resp.Header.Get("X-Ward-Deny-Reason") != "malformed_request" {
			t.Errorf("%s over %s: %d %s, want HTTP/2 %d malformed_request", h.Name, resp.Proto, resp.StatusCode, resp.Header.Get("X-Ward-Deny-Reason"), h.Status)
		}
		noneSeen(t, e.seen, h.Name)
	}

	// Finding 7: Ward's headers arrive whatever Connection names.
	status, body := rawHTTP1(t, dialH1(), head("/orders/7", "localhost",
		append(creds, [2]string{"Connection", "X-Ward-Identity, X-Ward-Client-Ip, X-Ward-Request-Id"})))
	if status != "200 OK" || body != "orders saw /orders/7 for user alice of app shop" {
		t.Fatalf("Connection naming Ward's headers: %s %q", status, body)
	}
	if r := <-e.seen; r.Header.Get("X-Ward-Client-Ip") != "127.0.0.1" {
		t.Errorf("the app got no client address: %v", r.Header)
	}

	// Finding 10: the path policy decided on, encoded once.
	for _, p := range []string{"/orders/a%20b", "/orders/caf%C3%A9", "/orders/x%22y"} {
		if status, body := rawHTTP1(t, dialH1(), head(p, "localhost", creds)); status != "200 OK" {
			t.Errorf("GET %s: %s %s", p, status, body)
			continue
		}
		if got := (<-e.seen).URL.EscapedPath(); got != p {
			t.Errorf("GET %s: the app got %q", p, got)
		}
	}
	if status, _ := rawHTTP1(t, dialH1(), head("/orders/a%2Fb", "localhost", creds)); !strings.HasPrefix(status, "400") {
		t.Errorf("GET /orders/a%%2Fb: %s, want 400", status)
	}
	noneSeen(t, e.seen, "an ambiguous path")
}

// TestMeshRequestHygieneEndToEnd runs the real binaries (server, orders'
// and catalog's sidecars) for issue 12 findings 3, 7 and 10 between
// services: a peer holding a valid SVID meets the same rules over HTTP/2
// as over HTTP/1.1, cannot strip Ward's headers with Connection, and the
// app receives the path that was authorized, through two sidecars.
func TestMeshRequestHygieneEndToEnd(t *testing.T) {
	seen := make(chan *http.Request, 100)
	m := startMeshPair(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r
		fmt.Fprintf(w, "orders saw %s from %s", r.URL.EscapedPath(), r.Header.Get("X-Ward-Peer-Id"))
	}))
	dir, ordersIn, catalogOut := m.dir, m.ordersIn, m.catalogOut

	// Finding 10: through catalog's outbound side and orders' inbound side.
	out := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: catalogOut})}}
	for _, p := range []string{"/orders/a%20b", "/orders/caf%C3%A9", "/orders/x%22y", "/orders/a%2Fb"} {
		resp, err := out.Get("http://orders" + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if p == "/orders/a%2Fb" {
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("GET %s: %d, want 400", p, resp.StatusCode)
			}
			noneSeen(t, seen, "an ambiguous path")
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s through two sidecars: %d", p, resp.StatusCode)
			continue
		}
		if got := (<-seen).URL.EscapedPath(); got != p {
			t.Errorf("GET %s through two sidecars: the app got %q", p, got)
		}
	}

	// A peer that holds catalog's SVID (persisted by its sidecar) calls
	// orders' sidecar directly.
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "catalog", "svid.pem"), filepath.Join(dir, "catalog", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	peerTLS := func(proto string) *tls.Config {
		// The test checks the server's hygiene, not its identity.
		return &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{proto}} //nolint:gosec // test peer
	}
	dialH1 := func() *tls.Conn {
		c, err := tls.Dial("tcp", ordersIn, peerTLS("http/1.1"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	h2 := &http.Transport{TLSClientConfig: peerTLS("h2"), ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()

	// Finding 3: the same refusals over HTTP/1.1 and HTTP/2.
	for _, h := range proxytest.HostileRequests() {
		if status, _ := rawHTTP1(t, dialH1(), head("/orders/7"+h.Path, "orders", h.Header)); !strings.HasPrefix(status, strconv.Itoa(h.Status)) {
			t.Errorf("%s over HTTP/1.1: %s, want %d", h.Name, status, h.Status)
		}
		req, _ := http.NewRequest("GET", "https://"+ordersIn+"/orders/7"+h.Path, nil)
		req.Host = "orders"
		resp, err := h2.RoundTrip(withFields(req, h.Header))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != h.Status {
			t.Errorf("%s over %s: %d, want HTTP/2 %d", h.Name, resp.Proto, resp.StatusCode, h.Status)
		}
		noneSeen(t, seen, h.Name)
	}

	// Finding 7: Ward's headers reach the app whatever Connection names.
	status, body := rawHTTP1(t, dialH1(), head("/orders/7", "orders", [][2]string{{"Connection", "X-Ward-Peer-Id, X-Ward-Request-Id"}}))
	if status != "200 OK" || body != "orders saw /orders/7 from spiffe://example.org/svc/catalog" {
		t.Fatalf("Connection naming Ward's headers: %s %q", status, body)
	}
	<-seen
}
