package gateway_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/proxy/proxytest"
)

// rawHead is an HTTP/1.1 request head for path with the given fields.
func rawHead(method, path string, fields [][2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: localhost\r\n", method, path)
	for _, f := range fields {
		fmt.Fprintf(&b, "%s: %s\r\n", f[0], f[1])
	}
	b.WriteString("\r\n")
	return b.String()
}

// doH2 sends a request over HTTP/2 with header fields spelled as given
// (HTTP/2 lower-cases them on the wire) and returns the status.
func (e *edge) doH2(t *testing.T, method, path string, fields [][2]string) int {
	t.Helper()
	req, err := http.NewRequest(method, e.url(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		req.Header[f[0]] = append(req.Header[f[0]], f[1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("the request went over %s, not HTTP/2", resp.Proto)
	}
	return resp.StatusCode
}

// TestHTTP2MeetsTheSameHygiene: issue 12 finding 3. Every hostile request
// of the shared table is refused alike over HTTP/1.1 and HTTP/2, before any
// route runs, and the service sees none of them.
func TestHTTP2MeetsTheSameHygiene(t *testing.T) {
	e := newEdge(t)
	for _, h := range proxytest.HostileRequests() {
		t.Run(h.Name, func(t *testing.T) {
			path := "/catalog/x" + h.Path
			before := e.catalog.app.count()
			if got := rawTLS(t, e, rawHead("GET", path, h.Header)); !strings.HasPrefix(got, strconv.Itoa(h.Status)) {
				t.Errorf("HTTP/1.1: %s, want %d", got, h.Status)
			}
			if got := e.doH2(t, "GET", path, h.Header); got != h.Status {
				t.Errorf("HTTP/2: %d, want %d", got, h.Status)
			}
			if n := e.catalog.app.count(); n != before {
				t.Errorf("the service saw %d hostile requests", n-before)
			}
		})
	}
	// The refusals are access records with their reason (written behind
	// the response: wait for them).
	want, refused := len(proxytest.HostileRequests()), 0
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		refused = 0
		for _, ev := range e.events.Events() {
			if ev.Decision == "deny" && ev.Reason == "malformed_request" && ev.Field("proto") == "HTTP/2.0" {
				refused++
			}
		}
		if refused >= want || time.Now().After(deadline) {
			break
		}
	}
	if refused != want {
		t.Errorf("%d HTTP/2 refusals recorded, want %d", refused, want)
	}
	// A clean request still goes through on both.
	if got := e.doH2(t, "GET", "/catalog/x", nil); got != http.StatusOK {
		t.Fatalf("clean HTTP/2 request: %d", got)
	}
}

// TestWardHeadersSurviveConnection: issue 12 finding 7. A client's
// Connection header naming Ward's headers cannot make them vanish on the
// way to the service: the app still learns who called.
func TestWardHeadersSurviveConnection(t *testing.T) {
	e := newEdge(t)
	status := rawTLS(t, e, rawHead("GET", "/catalog/x", [][2]string{
		{"X-Api-Key", e.apiKey},
		{"Connection", "X-Ward-Identity, X-Ward-Client-Ip, X-Ward-Request-Id"},
	}))
	if !strings.HasPrefix(status, "200") {
		t.Fatalf("status %s", status)
	}
	h := e.catalog.app.last().Header
	if h.Get("X-Ward-App") != "shop" || h.Get("X-Ward-Client-Ip") != "127.0.0.1" || h.Get("X-Ward-Peer-Id") != "spiffe://example.org/gateway/edge" {
		t.Fatalf("the app did not get Ward's headers: %v", h)
	}
}

// TestAppReceivesTheAuthorizedPath: issue 12 finding 10. The service gets
// exactly the path that policy decided on, encoded once; a path that can
// be read two ways is refused at the edge.
func TestAppReceivesTheAuthorizedPath(t *testing.T) {
	e := newEdge(t)
	for _, p := range []string{"/catalog/a%20b", "/catalog/caf%C3%A9", "/catalog/x%22y", "/catalog/caf%c3%a9/%7e"} {
		status := rawTLS(t, e, rawHead("GET", p, nil))
		if !strings.HasPrefix(status, "200") {
			t.Errorf("GET %s: %s", p, status)
			continue
		}
		want := strings.Replace(strings.Replace(p, "%c3%a9", "%C3%A9", 1), "%7e", "~", 1)
		if got := e.catalog.app.last().URL.EscapedPath(); got != want {
			t.Errorf("GET %s: the service got %q, want %q", p, got, want)
		}
	}
	before := e.catalog.app.count()
	if status := rawTLS(t, e, rawHead("GET", "/catalog/a%2Fb", nil)); !strings.HasPrefix(status, "400") {
		t.Errorf("GET /catalog/a%%2Fb: %s, want 400", status)
	}
	if e.catalog.app.count() != before {
		t.Error("the service saw an ambiguous path")
	}
}

// TestGatewayStripsWardHeadersBeforeConditions: issue 19 item 2 and issue
// 12 finding 11. Headers posing as Ward's, in any spelling, are gone before
// a route's condition reads request.headers: a forged X-Ward-User cannot
// satisfy a condition, even where the sidecar behind would strip it again.
func TestGatewayStripsWardHeadersBeforeConditions(t *testing.T) {
	e := newEdge(t)
	open := strings.Replace(readConfig(t, e), `"/limited/*", "/limited"]`, `"/limited/*", "/limited", "/staff/*"]`, 1)
	e.writeConfig(open + `---
apiVersion: ward/v1
kind: Route
metadata: {name: staff}
spec:
  pathPrefix: /staff
  service: catalog
  auth: {apiKey: optional, user: anonymous, when: '"x-ward-user" in request.headers && request.headers["x-ward-user"] == "admin"'}
`)
	waitReload(t, e, func() bool { return e.do("GET", "/staff/x", "", "", nil).StatusCode != 404 })
	before := e.catalog.app.count()
	for _, f := range proxytest.Forged {
		resp := e.do("GET", "/staff/x", "", "", map[string]string{f[0]: "admin"})
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Ward-Deny-Reason") != "route_condition_failed" {
			t.Errorf("%s: admin over HTTP/2: %d %s", f[0], resp.StatusCode, resp.Header.Get("X-Ward-Deny-Reason"))
		}
		if got := rawTLS(t, e, rawHead("GET", "/staff/x", [][2]string{{f[0], "admin"}})); !strings.HasPrefix(got, "403") {
			t.Errorf("%s: admin over HTTP/1.1: %s", f[0], got)
		}
	}
	if e.catalog.app.count() != before {
		t.Error("a forged header satisfied the route's condition")
	}
}
