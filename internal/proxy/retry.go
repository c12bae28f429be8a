package proxy

import (
	"net/http"
	"sync"
	"time"
)

// RetryBudgetConfig configures a [RetryBudget]. Zero fields select the
// defaults.
type RetryBudgetConfig struct {
	// Ratio is the share of retries allowed over the requests of the last
	// Window. Default 0.2.
	Ratio float64
	// MinPerSecond retries per second of Window are allowed whatever the
	// traffic, so that a quiet service can still retry. Default 3.
	MinPerSecond int
	Window       time.Duration // default 10s
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// RetryBudget caps retries so that they cannot multiply load on an
// upstream that is already failing: a retry is allowed only for a request
// that can be replayed safely, and only while retries stay within Ratio of
// the requests of the last Window (plus a small floor). It is safe for
// concurrent use.
type RetryBudget struct {
	cfg    RetryBudgetConfig
	mu     sync.Mutex
	win    window // requests (a) and retries (b)
	floorN int64  // MinPerSecond over the window
}

// NewRetryBudget returns an empty budget.
func NewRetryBudget(cfg RetryBudgetConfig) *RetryBudget {
	if cfg.Ratio <= 0 {
		cfg.Ratio = 0.2
	}
	if cfg.MinPerSecond <= 0 {
		cfg.MinPerSecond = 3
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	floor := int64(float64(cfg.MinPerSecond) * cfg.Window.Seconds())
	return &RetryBudget{cfg: cfg, win: newWindow(cfg.Window), floorN: max(floor, 1)}
}

// Request records one original request (not a retry).
func (b *RetryBudget) Request() {
	b.mu.Lock()
	b.win.add(b.cfg.Now(), 1, 0)
	b.mu.Unlock()
}

// CanRetry reports whether a request with this method may be retried now,
// and if so records the retry. The caller must also know that the body is
// empty or replayable; [RetryBudget.CanRetryRequest] checks both.
func (b *RetryBudget) CanRetry(method string) bool {
	if !IdempotentMethod(method) {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	requests, retries := b.win.sum(now)
	if float64(retries+1) > b.cfg.Ratio*float64(requests) && retries+1 > b.floorN {
		return false
	}
	b.win.add(now, 0, 1)
	return true
}

// CanRetryRequest is CanRetry for r, which must also be [Replayable].
func (b *RetryBudget) CanRetryRequest(r *http.Request) bool {
	return Replayable(r) && b.CanRetry(r.Method)
}

// IdempotentMethod reports whether a request with this method may be sent
// twice without changing its effect (RFC 9110 §9.2.2).
func IdempotentMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// Replayable reports whether r can be sent again: an idempotent method and
// no body, or a body that GetBody can produce again.
func Replayable(r *http.Request) bool {
	if !IdempotentMethod(r.Method) {
		return false
	}
	return r.Body == nil || r.Body == http.NoBody || r.GetBody != nil
}
