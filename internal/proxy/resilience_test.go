package proxy

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// call runs one request through b with the given outcome and reports
// whether it was allowed.
func call(b *Breaker, success bool) bool {
	done, ok := b.Allow()
	if ok {
		done(success)
	}
	return ok
}

func TestBreakerTripsAndRecovers(t *testing.T) {
	clk := newFakeClock()
	b := NewBreaker(BreakerConfig{Failures: 3, OpenFor: time.Second, MaxOpenFor: 5 * time.Second, Now: clk.Now})

	// Failures interrupted by a success do not trip it.
	for _, ok := range []bool{false, false, true, false, false} {
		if !call(b, ok) {
			t.Fatal("closed breaker refused a request")
		}
	}
	if b.State() != BreakerClosed {
		t.Fatalf("state %v, want closed", b.State())
	}
	call(b, false) // third failure in a row
	if b.State() != BreakerOpen {
		t.Fatalf("state %v, want open", b.State())
	}
	if call(b, true) {
		t.Fatal("open breaker let a request through")
	}

	// Cool-downs double on each failed probe, up to the cap: 1s, 2s, 4s, 5s.
	for _, openFor := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		clk.Advance(openFor - time.Millisecond)
		if _, ok := b.Allow(); ok {
			t.Fatalf("allowed before the %v cool-down ended", openFor)
		}
		clk.Advance(time.Millisecond)
		if b.State() != BreakerHalfOpen {
			t.Fatalf("state %v after %v, want half-open", b.State(), openFor)
		}
		probe, ok := b.Allow()
		if !ok {
			t.Fatal("half-open breaker refused the probe")
		}
		if _, ok := b.Allow(); ok {
			t.Fatal("half-open breaker let a second request through")
		}
		probe(false)
		if b.State() != BreakerOpen {
			t.Fatalf("state %v after a failed probe", b.State())
		}
	}

	// A successful probe closes it and resets the cool-down.
	clk.Advance(5 * time.Second)
	if !call(b, true) || b.State() != BreakerClosed {
		t.Fatalf("state %v after a good probe, want closed", b.State())
	}
	for range 3 {
		call(b, false)
	}
	clk.Advance(time.Second)
	if b.State() != BreakerHalfOpen {
		t.Fatal("cool-down not reset to OpenFor after recovery")
	}
}

func TestBreakerLateResults(t *testing.T) {
	clk := newFakeClock()
	b := NewBreaker(BreakerConfig{Failures: 1, OpenFor: time.Second, Now: clk.Now})
	slow, _ := b.Allow() // sent while closed, reports after the trip
	call(b, false)
	clk.Advance(time.Second)
	probe, ok := b.Allow()
	if !ok {
		t.Fatal("no probe")
	}
	slow(true) // must not close the breaker: only the probe decides
	if b.State() != BreakerHalfOpen {
		t.Fatalf("state %v after a stale success", b.State())
	}
	// A lost probe is replaced after OpenFor; the lost one is ignored.
	clk.Advance(time.Second)
	probe2, ok := b.Allow()
	if !ok {
		t.Fatal("lost probe not replaced")
	}
	probe(true)
	if b.State() != BreakerHalfOpen {
		t.Fatal("a replaced probe decided")
	}
	probe2(true)
	if b.State() != BreakerClosed {
		t.Fatalf("state %v, want closed", b.State())
	}
}

func TestBreakerFailureRatio(t *testing.T) {
	clk := newFakeClock()
	b := NewBreaker(BreakerConfig{Failures: 100, FailureRatio: 0.5, MinRequests: 10, Window: 10 * time.Second, Now: clk.Now})
	// Alternating outcomes: never 100 in a row, but half fail.
	for i := range 9 {
		call(b, i%2 == 0)
	}
	if b.State() != BreakerClosed {
		t.Fatal("tripped below MinRequests")
	}
	call(b, false) // 10 requests, 5 failures
	if b.State() != BreakerOpen {
		t.Fatalf("state %v, want open at a 50%% failure ratio", b.State())
	}

	// Old failures leave the window.
	clk.Advance(time.Hour)
	call(b, true) // probe closes it
	for range 6 {
		call(b, false)
		call(b, true)
	}
	clk.Advance(11 * time.Second)
	for range 9 {
		call(b, true)
	}
	call(b, false)
	if b.State() != BreakerClosed {
		t.Fatal("failures older than the window counted")
	}
}

func TestBreakerConcurrent(t *testing.T) {
	b := NewBreaker(BreakerConfig{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 1000 {
				call(b, (i+j)%3 != 0)
				_ = b.State()
			}
		}()
	}
	wg.Wait()
}

func TestEjector(t *testing.T) {
	clk := newFakeClock()
	e := NewEjector([]string{"a", "b", "c"}, EjectorConfig{Failures: 2, BaseEjection: time.Second, MaxEjection: 3 * time.Second, Now: clk.Now})
	pick := func() string {
		t.Helper()
		l, err := e.Pick()
		if err != nil {
			t.Fatal(err)
		}
		e.Done(l, Abandoned)
		return l.Host
	}
	picks := func(n int) string {
		var s []string
		for range n {
			s = append(s, pick())
		}
		return strings.Join(s, "")
	}
	if got := picks(60); !strings.Contains(got, "a") || !strings.Contains(got, "b") || !strings.Contains(got, "c") {
		t.Fatalf("not every endpoint picked: %s", got)
	}

	report(e, "b", false)
	report(e, "b", true) // breaks the run
	report(e, "b", false)
	if got := picks(30); !strings.Contains(got, "b") {
		t.Fatalf("b ejected too early: %s", got)
	}
	report(e, "b", false) // second in a row: out for 1s
	if got := picks(30); strings.Contains(got, "b") {
		t.Fatalf("with b ejected: %s", got)
	}
	report(e, "b", false) // while ejected: ignored
	clk.Advance(time.Second)
	if got := picks(30); !strings.Contains(got, "b") {
		t.Fatalf("b did not come back: %s", got)
	}

	// Ejected again soon after: twice as long (2s), then capped at 3s.
	for _, d := range []time.Duration{2 * time.Second, 3 * time.Second, 3 * time.Second} {
		report(e, "b", false)
		report(e, "b", false)
		clk.Advance(d - time.Millisecond)
		if got := picks(30); strings.Contains(got, "b") {
			t.Fatalf("b back before %v: %s", d, got)
		}
		clk.Advance(time.Millisecond)
		if got := picks(30); !strings.Contains(got, "b") {
			t.Fatalf("b not back after %v: %s", d, got)
		}
	}
	// After behaving for MaxEjection, the count starts over.
	clk.Advance(3 * time.Second)
	report(e, "b", false)
	report(e, "b", false)
	clk.Advance(time.Second)
	if got := picks(30); !strings.Contains(got, "b") {
		t.Fatalf("ejection count did not start over: %s", got)
	}

	// All ejected: a clear error, not a pick.
	for _, h := range []string{"a", "b", "c"} {
		report(e, h, false)
		report(e, h, false)
	}
	if _, err := e.Pick(); !errors.Is(err, ErrAllEjected) || !strings.Contains(err.Error(), "returns in") {
		t.Fatalf("all ejected: %v", err)
	}
	clk.Advance(3 * time.Second)
	if _, err := e.Pick(); err != nil {
		t.Fatalf("hosts did not come back: %v", err)
	}
}

func TestEjectorSetHosts(t *testing.T) {
	clk := newFakeClock()
	e := NewEjector([]string{"a", "b"}, EjectorConfig{Failures: 1, BaseEjection: time.Second, Now: clk.Now})
	report(e, "a", false)
	e.SetHosts([]string{"a", "c", "c"})
	for range 4 {
		l, _ := e.Pick()
		if l.Host != "c" {
			t.Fatalf("picked %q: a is still ejected, b is gone", l.Host)
		}
		e.Done(l, Succeeded)
	}
	report(e, "zz", false) // unknown: ignored
	e.SetHosts(nil)
	if _, err := e.Pick(); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("picked from no endpoints: %v", err)
	}
}

// report gives back a lease of host h with ok's outcome, as if it had
// been picked.
func report(e *Ejector, h string, ok bool) {
	e.mu.Lock()
	ep := e.byName[h]
	if ep != nil {
		ep.outstanding++
	}
	e.mu.Unlock()
	o := Failed
	if ok {
		o = Succeeded
	}
	e.Done(Lease{Host: h, ep: ep}, o)
}

func TestRetryBudget(t *testing.T) {
	clk := newFakeClock()
	b := NewRetryBudget(RetryBudgetConfig{Ratio: 0.1, MinPerSecond: 1, Window: 10 * time.Second, Now: clk.Now})
	for _, m := range []string{"POST", "PATCH", "CONNECT", "get"} {
		if b.CanRetry(m) {
			t.Errorf("%s retried", m)
		}
	}
	// No traffic: the floor (1/s over 10s) allows 10 retries.
	n := 0
	for b.CanRetry("GET") {
		n++
	}
	if n != 10 {
		t.Fatalf("floor allowed %d retries, want 10", n)
	}
	// 200 requests allow 20 retries in all (10% of them), 10 already used.
	for range 200 {
		b.Request()
	}
	n = 0
	for b.CanRetry("PUT") {
		n++
	}
	if n != 10 {
		t.Fatalf("ratio allowed %d more retries, want 10", n)
	}
	// The window slides: old retries and requests expire.
	clk.Advance(11 * time.Second)
	n = 0
	for b.CanRetry("DELETE") {
		n++
	}
	if n != 10 {
		t.Fatalf("after the window: %d retries, want the floor of 10", n)
	}
}

func TestReplayable(t *testing.T) {
	get, _ := http.NewRequest("GET", "http://a/", nil)
	put, _ := http.NewRequest("PUT", "http://a/", strings.NewReader("x")) // GetBody set
	stream, _ := http.NewRequest("PUT", "http://a/", strings.NewReader("x"))
	stream.GetBody = nil
	post, _ := http.NewRequest("POST", "http://a/", nil)
	for _, tc := range []struct {
		r    *http.Request
		want bool
	}{{get, true}, {put, true}, {stream, false}, {post, false}} {
		if got := Replayable(tc.r); got != tc.want {
			t.Errorf("%s with GetBody=%v: %v", tc.r.Method, tc.r.GetBody != nil, got)
		}
	}
	b := NewRetryBudget(RetryBudgetConfig{})
	if b.CanRetryRequest(stream) || !b.CanRetryRequest(put) {
		t.Error("CanRetryRequest ignores the body")
	}
}
