package proxy

import (
	"sync"
	"time"
)

// BreakerState is the state of a [Breaker].
type BreakerState int

const (
	BreakerClosed   BreakerState = iota // requests flow
	BreakerOpen                         // requests fail fast
	BreakerHalfOpen                     // one probe request is let through
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "unknown"
}

// BreakerConfig configures a [Breaker]. Zero fields select the defaults.
type BreakerConfig struct {
	// Failures trips the breaker after this many failures in a row.
	// Default 5.
	Failures int
	// FailureRatio, when above 0, also trips it once at least this share
	// of the requests of the last Window failed, over MinRequests or more.
	FailureRatio float64
	Window       time.Duration // default 10s
	MinRequests  int           // default 20
	// OpenFor is how long the breaker stays open after a trip. It doubles
	// with each trip in a row (each failed probe), up to MaxOpenFor; a
	// successful probe resets it. Defaults 5s and 5m. A probe that does
	// not report within OpenFor is presumed lost and another is let
	// through.
	OpenFor    time.Duration
	MaxOpenFor time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Breaker is a circuit breaker for one upstream: closed, it lets requests
// through and counts their outcomes; tripped by failures, it opens and
// fails requests fast for a cool-down; then it half-opens and lets a single
// probe through, whose outcome closes it again or reopens it for longer.
// It is safe for concurrent use.
type Breaker struct {
	cfg BreakerConfig

	mu          sync.Mutex
	state       BreakerState
	consecutive int // failures in a row while closed
	trips       int // trips since the breaker was last closed by a probe
	openUntil   time.Time
	probing     bool
	probeAt     time.Time
	gen         uint64 // identifies the current probe
	win         window // requests (a) and failures (b) while closed

	closedDone func(bool)
}

// NewBreaker returns a closed breaker.
func NewBreaker(cfg BreakerConfig) *Breaker {
	if cfg.Failures <= 0 {
		cfg.Failures = 5
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Second
	}
	if cfg.MinRequests <= 0 {
		cfg.MinRequests = 20
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = 5 * time.Second
	}
	if cfg.MaxOpenFor < cfg.OpenFor {
		cfg.MaxOpenFor = max(cfg.OpenFor, 5*time.Minute)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Breaker{cfg: cfg, win: newWindow(cfg.Window)}
	b.closedDone = b.reportClosed
	return b
}

// Allow asks to send one request. When ok, the caller must send it and
// then call done exactly once with its outcome (a connection error, a
// timeout or a 5xx is a failure). When not ok, the caller must fail the
// request fast (503) without sending it.
func (b *Breaker) Allow() (done func(success bool), ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now()
	switch b.state {
	case BreakerClosed:
		return b.closedDone, true
	case BreakerOpen:
		if now.Before(b.openUntil) {
			return nil, false
		}
		b.state = BreakerHalfOpen
		b.probing = false
	}
	if b.probing && now.Sub(b.probeAt) < b.cfg.OpenFor {
		return nil, false
	}
	b.probing, b.probeAt = true, now
	b.gen++ // a lost probe that reports late is ignored
	gen := b.gen
	return func(success bool) { b.reportProbe(gen, success) }, true
}

// State returns the current state; an open breaker whose cool-down is
// over reports half-open.
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerOpen && !b.cfg.Now().Before(b.openUntil) {
		return BreakerHalfOpen
	}
	return b.state
}

func (b *Breaker) reportClosed(success bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != BreakerClosed {
		return // sent before a trip: the probe decides now
	}
	now := b.cfg.Now()
	var failed int64
	if !success {
		failed = 1
	}
	b.win.add(now, 1, failed)
	if success {
		b.consecutive = 0
		return
	}
	b.consecutive++
	if b.consecutive >= b.cfg.Failures {
		b.trip(now)
		return
	}
	if b.cfg.FailureRatio > 0 {
		total, fails := b.win.sum(now)
		if total >= int64(b.cfg.MinRequests) && float64(fails) >= b.cfg.FailureRatio*float64(total) {
			b.trip(now)
		}
	}
}

func (b *Breaker) reportProbe(gen uint64, success bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != BreakerHalfOpen || gen != b.gen || !b.probing {
		return
	}
	b.probing = false
	if success {
		b.state = BreakerClosed
		b.trips, b.consecutive = 0, 0
		b.win.reset()
		return
	}
	b.trip(b.cfg.Now())
}

// trip opens the breaker for OpenFor * 2^trips, capped.
func (b *Breaker) trip(now time.Time) {
	d := b.cfg.OpenFor
	for range b.trips {
		if d >= b.cfg.MaxOpenFor/2 {
			d = b.cfg.MaxOpenFor
			break
		}
		d *= 2
	}
	b.trips++
	b.gen++
	b.state = BreakerOpen
	b.openUntil = now.Add(min(d, b.cfg.MaxOpenFor))
	b.consecutive = 0
	b.probing = false
	b.win.reset()
}
