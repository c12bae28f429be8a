package mesh

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/proxy"
	"github.com/wardsec/ward/internal/testport"
)

// TestHTTP1CallersGetHTTP2ByDefault: issue 13, the mesh hop. HTTP/2 is
// the cheaper protocol on this hop under concurrent load (BenchmarkHop,
// bench/mesh), so it is the default for HTTP/1.x callers too; only
// upgrades take the HTTP/1.1 pool.
func TestHTTP1CallersGetHTTP2ByDefault(t *testing.T) {
	ca := newAuthority(t)
	orders := serve(t, ca.svid("orders"), nil)
	c := client(t, ca.svid("catalog"), map[string][]string{"orders": {orders.addr}}, Resilience{})
	if status, _ := get(t, caller(t, false), front(t, c, "orders")+"/x"); status != 200 {
		t.Fatalf("HTTP/1.1 caller: %d", status)
	}
	if got := orders.seen("HTTP/2.0"); got != 1 {
		t.Fatalf("an HTTP/1.1 caller reached the service over HTTP/2 %d times of 1 (HTTP/1.1: %d)", got, orders.seen("HTTP/1.1"))
	}
}

// TestWarmHopReusesItsConnection: issue 13, the mesh hop. On either
// pool (HTTP/2, the default; HTTP/1.1 keep-alive for an HTTP/1.x caller
// with hop h1), once warm a request costs no dial, no handshake and no
// goroutine.
func TestWarmHopReusesItsConnection(t *testing.T) {
	ca := newAuthority(t)
	src := ca.svid("catalog")
	for _, tc := range []struct {
		name      string
		h1Callers bool
		proto     string
	}{{"HTTP/2", false, "HTTP/2.0"}, {"HTTP/1.1 keep-alive", true, "HTTP/1.1"}} {
		t.Run(tc.name, func(t *testing.T) {
			orders := serve(t, ca.svid("orders"), nil)
			c := client(t, src, map[string][]string{"orders": {orders.addr}}, Resilience{})
			c.h1Callers = tc.h1Callers
			url, hc := front(t, c, "orders"), caller(t, false)

			const warm, n = 3, 30
			var before int
			for i := range warm + n {
				if i == warm {
					before = runtime.NumGoroutine()
				}
				if status, body := get(t, hc, url+"/x"); status != 200 || body != "ok" {
					t.Fatalf("request %d: %d %q", i, status, body)
				}
			}
			if got := orders.seen(tc.proto); got != warm+n {
				t.Fatalf("an HTTP/1.1 caller reached the service over %s %d times of %d (HTTP/1.1: %d, HTTP/2.0: %d)",
					tc.proto, got, warm+n, orders.seen("HTTP/1.1"), orders.seen("HTTP/2.0"))
			}
			if got := orders.conns.Load(); got != 1 {
				t.Errorf("%d sequential requests opened %d connections, want 1", warm+n, got)
			}
			if after := settled(before); after > before {
				t.Errorf("goroutines grew from %d to %d over %d warm requests", before, after, n)
			}
		})
	}
}

// settled returns the number of goroutines once it is at most want, or
// after a second: a server's goroutine for a request it answered may take
// a moment to end.
func settled(want int) int {
	deadline := time.Now().Add(time.Second)
	n := runtime.NumGoroutine()
	for n > want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// TestHTTP2AndGRPCCallersKeepHTTP2: issue 13. HTTP/2 callers and gRPC
// (whatever the caller's protocol says) stay on HTTP/2 end to end, also
// when HTTP/1.x callers get the HTTP/1.1 pool.
func TestHTTP2AndGRPCCallersKeepHTTP2(t *testing.T) {
	ca := newAuthority(t)
	orders := serve(t, ca.svid("orders"), nil)
	c := client(t, ca.svid("catalog"), map[string][]string{"orders": {orders.addr}}, Resilience{})
	c.h1Callers = true // even so
	url := front(t, c, "orders")

	if status, _ := get(t, caller(t, true), url+"/x"); status != 200 {
		t.Fatalf("h2 caller: %d", status)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/pkg.Svc/Call", strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Header.Set("Content-Type", "application/grpc+proto")
	if status, _ := call(t, caller(t, false), req); status != 200 {
		t.Fatalf("grpc over an HTTP/1.1 caller: %d", status)
	}
	if got := orders.seen("HTTP/2.0"); got != 2 {
		t.Fatalf("HTTP/2 and gRPC callers reached the service over HTTP/2 %d times of 2 (HTTP/1.1: %d)", got, orders.seen("HTTP/1.1"))
	}
}

// TestMeshRefusesAnotherServicesSVID: issue 13. Over either protocol, a
// new connection is accepted only from a server proving exactly the
// called service's SPIFFE ID: an endpoint presenting another service's
// SVID gets no request, and the caller a 502. The HTTP/1.1 pool carries
// upgrades in every build and HTTP/1.x callers with hop h1.
func TestMeshRefusesAnotherServicesSVID(t *testing.T) {
	ca := newAuthority(t)
	orders := serve(t, ca.svid("orders"), func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			w.WriteHeader(http.StatusNotImplemented) // reached; the switch itself is TestWebSocketOverHTTP1's
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	impostor := serve(t, ca.svid("payments"), nil) // a valid SVID, of another service
	c := client(t, ca.svid("catalog"), map[string][]string{"orders": {orders.addr}}, Resilience{})
	h1 := clientFor(t, c, "orders", orders.addr)
	h1.h1Callers = true
	bad, badH1 := clientFor(t, c, "orders", impostor.addr), clientFor(t, c, "orders", impostor.addr)
	badH1.h1Callers = true
	refusal := regexp.MustCompile(`^\{"error":"bad gateway","reason":"upstream_unreachable","request_id":"[0-9a-f]{24}"\}\n$`)

	for _, tc := range []struct {
		name      string
		good, bad *Client
		h2        bool
		proto     string
	}{
		{"HTTP/1.1 pool", h1, badH1, false, "HTTP/1.1"},
		{"HTTP/2", c, bad, true, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc := caller(t, tc.h2)
			before := orders.seen(tc.proto)
			if status, _ := get(t, hc, front(t, tc.good, "orders")+"/x"); status != 200 || orders.seen(tc.proto) != before+1 {
				t.Fatalf("the right service: %d, want 200 over %s (HTTP/1.1: %d, HTTP/2.0: %d)", status, tc.proto, orders.seen("HTTP/1.1"), orders.seen("HTTP/2.0"))
			}
			status, body := get(t, hc, front(t, tc.bad, "orders")+"/x")
			if status != http.StatusBadGateway || !refusal.MatchString(body) {
				t.Errorf("another service's SVID: %d %q, want 502", status, body)
			}
			if n := impostor.hits.Load(); n != 0 {
				t.Errorf("the impostor received %d requests", n)
			}
		})
	}
	t.Run("upgrade", func(t *testing.T) {
		before := orders.seen("HTTP/1.1")
		if resp, _ := upgrade(t, front(t, c, "orders")); resp.StatusCode != http.StatusNotImplemented || orders.seen("HTTP/1.1") != before+1 {
			t.Fatalf("the right service: %d, want its 501 over HTTP/1.1", resp.StatusCode)
		}
		resp, _ := upgrade(t, front(t, bad, "orders"))
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadGateway || !refusal.MatchString(string(body)) {
			t.Errorf("another service's SVID: %d %q, want 502", resp.StatusCode, body)
		}
		if n := impostor.hits.Load(); n != 0 {
			t.Errorf("the impostor received %d requests", n)
		}
	})
}

// upgrade sends a WebSocket upgrade to a front and returns the answer and
// the connection's reader (the connection closes when the test ends).
func upgrade(t *testing.T, url string) (*http.Response, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: orders\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp, br
}

// clientFor returns a client like c whose service name resolves to addr.
func clientFor(t *testing.T, c *Client, name, addr string) *Client {
	t.Helper()
	cfg := c.cfg
	cfg.Resolve = func(n string) ([]string, bool) { return []string{addr}, n == name }
	d := New(cfg)
	t.Cleanup(d.Close)
	return d
}

// TestHTTP1PoolIsBounded: issue 13. However many HTTP/1.x callers wait at
// once, an endpoint gets at most the pool's bound of connections; the
// others queue for one and are all served.
func TestHTTP1PoolIsBounded(t *testing.T) {
	ca := newAuthority(t)
	var inflight, peak atomic.Int64
	release := make(chan struct{})
	orders := serve(t, ca.svid("orders"), func(w http.ResponseWriter, _ *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		w.WriteHeader(http.StatusNoContent)
	})
	c := client(t, ca.svid("catalog"), map[string][]string{"orders": {orders.addr}}, Resilience{})
	c.maxConns, c.h1Callers = 2, true
	url, hc := front(t, c, "orders"), caller(t, false)

	const callers = 8
	var wg sync.WaitGroup
	statuses := make(chan int, callers)
	for range callers {
		wg.Go(func() { s, _ := get(t, hc, url+"/slow"); statuses <- s })
	}
	deadline := time.Now().Add(10 * time.Second)
	for inflight.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusNoContent {
			t.Errorf("a queued caller got %d", s)
		}
	}
	if got := orders.conns.Load(); got > 2 {
		t.Errorf("%d callers opened %d connections to one endpoint, bound 2", callers, got)
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrency at the service %d, want the bound 2", p)
	}
	if got := orders.seen("HTTP/1.1"); got != callers {
		t.Errorf("%d of %d requests over HTTP/1.1", got, callers)
	}
}

// TestResilienceCoversHTTP1: issue 13. Retry, ejection and the breaker
// wrap the HTTP/1.1 pool as they wrap HTTP/2 (here with hop h1).
func TestResilienceCoversHTTP1(t *testing.T) {
	ca := newAuthority(t)
	orders := serve(t, ca.svid("orders"), nil)
	dead := deadAddr(t)
	src := ca.svid("catalog")

	t.Run("retry and ejection", func(t *testing.T) {
		c := client(t, src, map[string][]string{"orders": {dead, orders.addr}}, Resilience{Ejector: proxy.EjectorConfig{Failures: 2}})
		c.h1Callers = true
		url, hc := front(t, c, "orders"), caller(t, false)
		for i := range 10 {
			if status, _ := get(t, hc, url+"/x"); status != 200 {
				t.Fatalf("request %d with one dead endpoint: %d", i, status)
			}
		}
		if got := orders.seen("HTTP/1.1"); got < 10 {
			t.Errorf("%d requests over HTTP/1.1, want 10", got)
		}
	})
	t.Run("breaker", func(t *testing.T) {
		c := client(t, src, map[string][]string{"orders": {dead}}, Resilience{
			Ejector: proxy.EjectorConfig{Failures: 1000},
			Breaker: proxy.BreakerConfig{Failures: 2, OpenFor: time.Minute},
		})
		c.h1Callers = true
		url, hc := front(t, c, "orders"), caller(t, false)
		var last string
		for range 3 {
			_, last = get(t, hc, url+"/x")
		}
		if !strings.Contains(last, `"reason":"circuit_open"`) {
			t.Errorf("after failures over HTTP/1.1: %q, want the breaker open", last)
		}
	})
}

// deadAddr is a loopback address nothing listens on, reserved for this
// test process so no other test binds it meanwhile.
func deadAddr(t *testing.T) string {
	t.Helper()
	return testport.Addr(t)
}

// TestWebSocketOverHTTP1: issue 13. An Upgrade still goes through on its
// own HTTP/1.1 connection and bytes flow both ways afterwards.
func TestWebSocketOverHTTP1(t *testing.T) {
	ca := newAuthority(t)
	orders := serve(t, ca.svid("orders"), func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		line, _ := rw.ReadString('\n')
		fmt.Fprintf(rw, "echo %s", line)
		_ = rw.Flush()
	})
	c := client(t, ca.svid("catalog"), map[string][]string{"orders": {orders.addr}}, Resilience{})
	url := front(t, c, "orders")

	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: orders\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	fmt.Fprintf(conn, "hello\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo hello\n" {
		t.Fatalf("after upgrade: %q %v", line, err)
	}
}
