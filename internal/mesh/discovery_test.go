package mesh

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/identity"
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/proxy"
)

// endpoints is a service's endpoint set that a test changes while the
// mesh client resolves it, as snapshots carrying instances would.
type endpoints struct {
	mu  sync.Mutex
	eps []string
}

func (e *endpoints) set(eps ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.eps = slices.Clone(eps)
}

func (e *endpoints) resolve(name string) ([]string, bool) {
	if name != "orders" {
		return nil, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.eps, true
}

func dynamicClient(t *testing.T, a *authority, eps *endpoints, res Resilience) *Client {
	t.Helper()
	c := New(Config{Source: a.svid("catalog"), TrustDomain: td, Log: quiet(), Resilience: res, Resolve: eps.resolve})
	t.Cleanup(c.Close)
	return c
}

// A service without endpoints (no instance registered yet) is a clear 503
// no_endpoints, and it does not hold the breaker open for the first
// instance that comes.
func TestNoEndpointsIs503(t *testing.T) {
	a := newAuthority(t)
	eps := &endpoints{}
	c := dynamicClient(t, a, eps, Resilience{Breaker: proxy.BreakerConfig{}})
	url := front(t, c, "orders")
	hc := caller(t, false)
	for range 20 {
		resp, err := hc.Get(url + "/x")
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error, Reason, RequestID string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || body.Reason != ReasonNoEndpoints ||
			resp.Header.Get(pipeline.HeaderDenyReason) != ReasonNoEndpoints {
			t.Fatalf("no endpoints: %d %+v", resp.StatusCode, body)
		}
	}
	if r := pipeline.Lookup(ReasonNoEndpoints); r.Code != ReasonNoEndpoints || r.Status != http.StatusServiceUnavailable {
		t.Fatalf("no_endpoints is not a registered reason: %+v", r)
	}
	svc := serve(t, a.svid("orders"), nil)
	eps.set(svc.addr)
	if code, body := get(t, hc, url+"/x"); code != http.StatusOK {
		t.Fatalf("first instance: %d %s", code, body)
	}
}

// Three endpoints under load, one killed: after the ejection window no
// request fails (retries and ejection cover it); an endpoint added gets
// traffic at once, one removed gets no new request.
func TestEndpointKilledUnderLoad(t *testing.T) {
	a := newAuthority(t)
	src := a.svid("orders")
	s1, s2, s3 := serve(t, src, nil), serve(t, src, nil), serve(t, src, nil)
	eps := &endpoints{}
	eps.set(s1.addr, s2.addr, s3.addr)
	c := dynamicClient(t, a, eps, Resilience{
		Ejector: proxy.EjectorConfig{Failures: 2, BaseEjection: 30 * time.Second},
		Retry:   proxy.RetryBudgetConfig{MinPerSecond: 100},
	})
	url := front(t, c, "orders")
	hc := caller(t, false)

	var phase atomic.Int64 // 0: before the kill, 1: in the ejection window, 2: after it
	var failed [3]atomic.Int64
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				p := phase.Load()
				resp, err := hc.Get(url + "/x")
				sent.Add(1)
				if err == nil {
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					// A request sent before the kill and caught by it
					// counts in the window.
					if p == 0 && phase.Load() > 0 {
						p = 1
					}
					failed[p].Add(1)
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(300 * time.Millisecond)
	s2.kill()
	phase.Store(1)
	time.Sleep(300 * time.Millisecond) // the ejection window: a few failures eject s2
	phase.Store(2)
	before := sent.Load()
	time.Sleep(time.Second)
	if n := failed[2].Load(); n != 0 {
		t.Fatalf("%d of %d requests failed after the ejection window", n, sent.Load()-before)
	}
	if n := sent.Load() - before; n < 100 {
		t.Fatalf("only %d requests in a second: no load", n)
	}
	t.Logf("failed before the kill %d, in the ejection window %d, after %d", failed[0].Load(), failed[1].Load(), failed[2].Load())
	if failed[0].Load() != 0 {
		t.Fatalf("%d requests failed before the kill", failed[0].Load())
	}

	// A new instance gets traffic within a moment; a removed one none.
	s4 := serve(t, src, nil)
	eps.set(s1.addr, s3.addr, s4.addr)
	time.Sleep(200 * time.Millisecond)
	if s4.hits.Load() == 0 {
		t.Fatal("the new endpoint got no traffic")
	}
	eps.set(s1.addr, s4.addr)
	time.Sleep(100 * time.Millisecond) // requests in flight to s3 finish
	h3 := s3.hits.Load()
	h4 := s4.hits.Load()
	time.Sleep(500 * time.Millisecond)
	if got := s3.hits.Load(); got != h3 {
		t.Fatalf("removed endpoint got %d new requests", got-h3)
	}
	if s4.hits.Load() == h4 {
		t.Fatal("no traffic after the removal")
	}
	if n := failed[2].Load(); n != 0 {
		t.Fatalf("%d requests failed while the set changed", n)
	}
}

// l4Service accepts mutual TLS streams with ALPN ward-l4 and counts them;
// each stays open until its caller closes it.
func l4Service(t *testing.T, a *authority) (addr string, accepted *atomic.Int64) {
	t.Helper()
	cfg := a.svid("orders").ServerTLSConfig(identity.AuthorizeMemberOf(td))
	cfg.NextProtos = []string{"ward-l4"}
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					accepted.Add(1)
				}
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().String(), accepted
}

// An L4 stream counts on its endpoint while it is open: new streams go to
// the endpoint with fewer open.
func TestStreamsSpreadByOpenCount(t *testing.T) {
	a := newAuthority(t)
	addrA, gotA := l4Service(t, a)
	addrB, gotB := l4Service(t, a)
	eps := &endpoints{}
	eps.set(addrA, addrB)
	c := dynamicClient(t, a, eps, Resilience{})
	u, err := c.Upstream("orders")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	defer func() {
		for _, s := range held {
			s.Close()
		}
	}()
	// Four streams held open: two on each endpoint.
	for range 4 {
		s, err := u.DialStream(t.Context(), "ward-l4")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, s)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	waitFor("4 streams accepted", func() bool { return gotA.Load()+gotB.Load() == 4 })
	if gotA.Load() != 2 || gotB.Load() != 2 {
		t.Fatalf("4 held streams: %d on A, %d on B, want 2 and 2", gotA.Load(), gotB.Load())
	}
	// Close those on A: the next two go to A.
	for _, s := range held {
		if s.RemoteAddr().String() == addrA {
			s.Close()
		}
	}
	for range 2 {
		s, err := u.DialStream(t.Context(), "ward-l4")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, s)
		if s.RemoteAddr().String() != addrA {
			t.Fatalf("a stream went to B with 2 open there and fewer on A")
		}
	}
}
