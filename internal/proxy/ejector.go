package proxy

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrAllEjected is returned (wrapped) by [Ejector.Pick] when every endpoint
// is ejected: the caller should fail the request (503) rather than send it
// to an endpoint known to fail.
var ErrAllEjected = errors.New("proxy: every endpoint is ejected")

// EjectorConfig configures an [Ejector]. Zero fields select the defaults.
type EjectorConfig struct {
	// Failures ejects an endpoint after this many failures in a row.
	// Default 5.
	Failures int
	// An endpoint's k-th ejection in a row lasts BaseEjection * 2^k, at
	// most MaxEjection. The count starts over once the endpoint stayed in
	// for MaxEjection. Defaults 10s and 5m.
	BaseEjection time.Duration
	MaxEjection  time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Ejector balances requests round-robin over the endpoints of one service
// and takes out (ejects) those that keep failing (outlier detection). An
// ejected endpoint comes back by itself when its ejection ends. It is safe
// for concurrent use.
type Ejector struct {
	cfg EjectorConfig

	mu     sync.Mutex
	hosts  []*endpoint
	byName map[string]*endpoint
	next   int
}

type endpoint struct {
	name      string
	fails     int       // failures in a row
	ejections int       // ejections in a row
	until     time.Time // end of the current ejection, zero when in
	back      time.Time // end of the last ejection
}

// NewEjector returns an Ejector over hosts (duplicates are ignored).
func NewEjector(hosts []string, cfg EjectorConfig) *Ejector {
	if cfg.Failures <= 0 {
		cfg.Failures = 5
	}
	if cfg.BaseEjection <= 0 {
		cfg.BaseEjection = 10 * time.Second
	}
	if cfg.MaxEjection < cfg.BaseEjection {
		cfg.MaxEjection = max(cfg.BaseEjection, 5*time.Minute)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Ejector{cfg: cfg}
	e.SetHosts(hosts)
	return e
}

// SetHosts replaces the endpoints (on a new snapshot). Endpoints that stay
// keep their state, ejections included.
func (e *Ejector) SetHosts(hosts []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.byName
	e.hosts = e.hosts[:0:0]
	e.byName = make(map[string]*endpoint, len(hosts))
	for _, h := range hosts {
		if _, dup := e.byName[h]; dup {
			continue
		}
		ep := old[h]
		if ep == nil {
			ep = &endpoint{name: h}
		}
		e.hosts = append(e.hosts, ep)
		e.byName[h] = ep
	}
	e.next = 0
}

// Pick returns the next endpoint that is not ejected, or an error wrapping
// ErrAllEjected that says when the first one comes back.
func (e *Ejector) Pick() (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(e.hosts)
	if n == 0 {
		return "", errors.New("proxy: no endpoints")
	}
	now := e.cfg.Now()
	var first time.Time
	for i := range n {
		ep := e.hosts[(e.next+i)%n]
		if !ep.until.IsZero() {
			if now.Before(ep.until) {
				if first.IsZero() || ep.until.Before(first) {
					first = ep.until
				}
				continue
			}
			ep.until, ep.fails = time.Time{}, 0 // back in
		}
		e.next = (e.next + i + 1) % n
		return ep.name, nil
	}
	return "", fmt.Errorf("%w: %d of %d, the first returns in %v", ErrAllEjected, n, n, first.Sub(now).Round(time.Millisecond))
}

// Report records the outcome of a request sent to host. Unknown hosts and
// reports about a host while it is ejected are ignored.
func (e *Ejector) Report(host string, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.byName[host]
	now := e.cfg.Now()
	if ep == nil || !ep.until.IsZero() && now.Before(ep.until) {
		return
	}
	if ok {
		ep.fails = 0
		return
	}
	ep.fails++
	if ep.fails < e.cfg.Failures {
		return
	}
	if !ep.back.IsZero() && now.Sub(ep.back) >= e.cfg.MaxEjection {
		ep.ejections = 0 // it behaved for long enough: start over
	}
	d := e.cfg.BaseEjection
	for range ep.ejections {
		if d >= e.cfg.MaxEjection/2 {
			d = e.cfg.MaxEjection
			break
		}
		d *= 2
	}
	d = min(d, e.cfg.MaxEjection)
	ep.ejections++
	ep.fails = 0
	ep.until = now.Add(d)
	ep.back = ep.until
}
