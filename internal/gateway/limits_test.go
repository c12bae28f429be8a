package gateway_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/gateway"
	"github.com/wardsec/ward/internal/proxy"
)

// TestAnonymousLimitHoldsWhateverTheUserAgent (issue 12 finding 6): an
// anonymous caller that changes its User-Agent on every request still runs
// into the route's limit (2 per minute), while the records keep telling
// the anonymous ids apart.
func TestAnonymousLimitHoldsWhateverTheUserAgent(t *testing.T) {
	e := newEdge(t)
	ids := map[string]bool{}
	for i, ua := range []string{"agent-1", "agent-2", "agent-3", "agent-4"} {
		resp := e.do("GET", "/catalog/anon-limited", "", "", map[string]string{"User-Agent": ua})
		if i < 2 {
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %d %s", i, resp.StatusCode, bodyOf(resp))
			}
			continue
		}
		if resp.StatusCode != 429 {
			t.Fatalf("request %d with a fresh User-Agent: status %d, want 429", i, resp.StatusCode)
		}
		ev := findEvent(t, e.events, resp.Header.Get("X-Ward-Request-Id"))
		ids[ev.Field("anonymous_id")] = true
	}
	if len(ids) != 2 {
		t.Fatalf("records should keep one anonymous id per User-Agent, got %v", ids)
	}
}

// dialFrom opens an HTTP/1.1 TLS connection to the gateway from the
// loopback address src.
func dialFrom(t *testing.T, e *edge, src string) *tls.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", e.gw.Addr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) //nolint:gosec // test client of a test server
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readStatus reads one response from c within d and returns it (nil and
// the error when none came).
func readStatus(c net.Conn, d time.Duration) (*http.Response, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

// post sends body to path from the default client.
func (e *edge) post(path string, body []byte) *http.Response {
	e.t.Helper()
	resp, err := e.client.Post(e.url(path), "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestBodyPastRouteLimitGets413 (issue 12 finding 9): a Route's
// limits.body (1KiB on /catalog/small) refuses larger bodies with 413,
// declared or chunked, and the service sees nothing of them.
func TestBodyPastRouteLimitGets413(t *testing.T) {
	e := newEdge(t)
	if resp := e.post("/catalog/small", make([]byte, 1024)); resp.StatusCode != 200 {
		t.Fatalf("1 KiB body: status %d", resp.StatusCode)
	}
	before := e.catalog.app.count()
	if resp := e.post("/catalog/small", make([]byte, 1025)); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("1 KiB + 1 body: status %d, want 413", resp.StatusCode)
	}
	chunked := "POST /catalog/small HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + strings.Repeat("a", 2048) + "\r\n0\r\n\r\n"
	if status := rawTLS(t, e, chunked); !strings.HasPrefix(status, "413") {
		t.Fatalf("chunked 2 KiB body: %s, want 413", status)
	}
	if e.catalog.app.count() != before {
		t.Fatal("the service saw a body over the route's limit")
	}
	// Other routes keep the default of 1 MiB.
	if resp := e.post("/catalog/big", make([]byte, 512<<10)); resp.StatusCode != 200 {
		t.Fatalf("512 KiB body on a route without limits: status %d", resp.StatusCode)
	}
}

// TestSlowBodiesCannotStarveAnotherSource (issue 12 finding 8, scaled
// down): with a cap of 4 concurrent requests per source, 6 requests from
// 127.0.0.2 whose bodies trickle in take 4 slots and are refused 429 past
// them; the 4 get 408 once they fall below the minimum rate, without the
// service ever seeing them; and a request from 127.0.0.3 is served at once
// meanwhile.
func TestSlowBodiesCannotStarveAnotherSource(t *testing.T) {
	e := newEdgeWith(t, func(c *gateway.Config) {
		c.Limits.MaxPerSource = 4
		c.Bodies = proxy.NewBodies(proxy.BodyConfig{MinRate: 1024, Grace: 2 * time.Second})
	})
	before := e.catalog.app.count()
	const slow = 6
	conns := make([]*tls.Conn, slow)
	for i := range conns {
		conns[i] = dialFrom(t, e, "127.0.0.2")
		if _, err := io.WriteString(conns[i], "POST /catalog/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\na"); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	other := dialFrom(t, e, "127.0.0.3")
	_, _ = io.WriteString(other, "GET /catalog/fast HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, err := readStatus(other, 5*time.Second)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request from another source: %v %v", resp, err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond { // the slow ones are held for 2s
		t.Errorf("request from another source took %v", d)
	}
	statuses := make([]int, slow)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			resp, err := readStatus(c, 8*time.Second)
			if err == nil {
				statuses[i] = resp.StatusCode
				if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
					t.Errorf("429 without Retry-After")
				}
			}
		})
	}
	wg.Wait()
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[http.StatusTooManyRequests] != slow-4 || count[http.StatusRequestTimeout] != 4 {
		t.Fatalf("slow requests from one source got %v, want 2 x 429 and 4 x 408", statuses)
	}
	if e.catalog.app.count() != before+1 {
		t.Fatalf("the service saw %d requests, want only the fast one", e.catalog.app.count()-before)
	}
}

// TestBodyBudgetRefusesWith503 (issue 12 finding 9, scaled down): with a
// process budget of 256 KiB, bodies that are withheld near their end hold
// at most the budget; the requests past it get 503 with Retry-After, and
// once the clients go away the budget is whole again.
func TestBodyBudgetRefusesWith503(t *testing.T) {
	bodies := proxy.NewBodies(proxy.BodyConfig{Budget: 256 << 10})
	e := newEdgeWith(t, func(c *gateway.Config) { c.Bodies = bodies })
	before := e.catalog.app.count()
	chunk := "19000\r\n" + strings.Repeat("a", 100<<10) + "\r\n" // 100 KiB, last chunk withheld
	heads := []string{
		"POST /catalog/b HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk,
		"POST /catalog/b HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n" + strings.Repeat("a", 100<<10),
	}
	const n = 8
	conns := make([]*tls.Conn, n)
	for i := range conns {
		conns[i] = dialFrom(t, e, "127.0.0.2")
		if _, err := io.WriteString(conns[i], heads[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	refused := 0
	for _, c := range conns {
		resp, err := readStatus(c, 3*time.Second)
		if err != nil {
			continue // still held: its body is buffered
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("status %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		refused++
	}
	if refused < n-2 || refused == n {
		t.Fatalf("%d of %d withheld bodies refused, want all but the 1 or 2 that fit", refused, n)
	}
	if b := bodies.Buffered(); b > 256<<10 || b == 0 {
		t.Fatalf("%d bytes buffered, budget 256 KiB", b)
	}
	// The operator sees it too.
	resp, err := http.Get("http://" + e.gw.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("ward_gateway_body_buffered_bytes %d\n", bodies.Buffered()); !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %q", want)
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for bodies.Buffered() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still buffered after the clients left", bodies.Buffered())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e.catalog.app.count() != before {
		t.Fatal("the service saw a withheld body")
	}
	if resp := e.post("/catalog/b", make([]byte, 100<<10)); resp.StatusCode != 200 {
		t.Fatalf("after the budget came back: status %d", resp.StatusCode)
	}
}
