package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
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

// ErrNoEndpoints is returned (wrapped) by [Ejector.Pick] when the service
// has no endpoint at all (none configured, no instance registered yet).
var ErrNoEndpoints = errors.New("proxy: no endpoints")

// Ejector balances requests over the endpoints of one service and takes
// out (ejects) those that keep failing (outlier detection). An ejected
// endpoint comes back by itself when its ejection ends. Among the others
// it picks by the power of two choices: of two endpoints drawn at random,
// the one with fewer requests outstanding (picked and not yet done), so a
// slow endpoint gets less and a new one gets its share at once. It is
// safe for concurrent use.
type Ejector struct {
	cfg EjectorConfig

	mu     sync.Mutex
	hosts  []*endpoint
	byName map[string]*endpoint
}

type endpoint struct {
	name        string
	outstanding int       // picked, not yet done
	fails       int       // failures in a row
	ejections   int       // ejections in a row
	until       time.Time // end of the current ejection, zero when in
	back        time.Time // end of the last ejection
}

// Lease is one pick of an endpoint: the request counts as outstanding on
// Host until the lease is given back with [Ejector.Done], exactly once.
type Lease struct {
	Host string
	ep   *endpoint
}

// Outcome is how a request sent to a picked endpoint went.
type Outcome uint8

const (
	// Succeeded: the endpoint answered.
	Succeeded Outcome = iota
	// Failed: the endpoint could not be reached or its sidecar failed;
	// enough of them in a row eject it.
	Failed
	// Abandoned: says nothing about the endpoint (the caller went away);
	// it only ends the request.
	Abandoned
)

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
// keep their state, ejections and outstanding requests included; a
// removed one gets no new request (those in flight finish and are given
// back as usual).
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
}

// Pick returns an endpoint that is not ejected, as a Lease to give back
// with Done. It fails with an error wrapping ErrNoEndpoints when there is
// none at all, or ErrAllEjected, saying when the first one comes back,
// when every one is ejected; a failed Pick has nothing to give back.
func (e *Ejector) Pick() (Lease, error) {
	return e.pick("")
}

// PickOther is Pick for a retry: it avoids host (the endpoint that just
// failed) unless no other endpoint is in.
func (e *Ejector) PickOther(host string) (Lease, error) {
	return e.pick(host)
}

func (e *Ejector) pick(avoid string) (Lease, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(e.hosts)
	if n == 0 {
		return Lease{}, ErrNoEndpoints
	}
	now := e.cfg.Now()
	var best *endpoint
	if avoid != "" && n > 1 {
		if ep := e.byName[avoid]; ep != nil && e.in(ep, now) {
			// Taken out for this pick only; back in when nothing else is.
			until := ep.until
			ep.until = now.Add(time.Nanosecond)
			best = e.choose(n, now)
			ep.until = until
			if best == nil {
				best = ep
			}
			best.outstanding++
			return Lease{Host: best.name, ep: best}, nil
		}
	}
	best = e.choose(n, now)
	if best == nil {
		var first time.Time
		for _, ep := range e.hosts {
			if first.IsZero() || ep.until.Before(first) {
				first = ep.until
			}
		}
		return Lease{}, fmt.Errorf("%w: %d of %d, the first returns in %v", ErrAllEjected, n, n, first.Sub(now).Round(time.Millisecond))
	}
	best.outstanding++
	return Lease{Host: best.name, ep: best}, nil
}

// choose returns the endpoint with fewer requests outstanding of two drawn
// at random among those in (n > 0 of them), or nil when all are ejected.
func (e *Ejector) choose(n int, now time.Time) *endpoint {
	if n == 1 {
		if ep := e.hosts[0]; e.in(ep, now) {
			return ep
		}
		return nil
	}
	// Two draws (distinct when n > 1); an ejected draw is replaced by a
	// walk from it to the next endpoint in, so ejections cost a few
	// steps, not a scan per pick.
	r := rand.Uint64()
	i := int(r % uint64(n))
	j := int((r >> 32) % uint64(n-1))
	if j >= i {
		j++
	}
	a, b := e.walk(i, now), e.walk(j, now)
	switch {
	case a == nil:
		return b
	case b == nil || a.outstanding <= b.outstanding:
		return a
	default:
		return b
	}
}

// walk returns the first endpoint in, from index i on (wrapping), or nil
// when all are ejected.
func (e *Ejector) walk(i int, now time.Time) *endpoint {
	n := len(e.hosts)
	for k := range n {
		if ep := e.hosts[(i+k)%n]; e.in(ep, now) {
			return ep
		}
	}
	return nil
}

// in reports whether ep is not ejected at now, taking it back in when its
// ejection has ended.
func (e *Ejector) in(ep *endpoint, now time.Time) bool {
	if ep.until.IsZero() {
		return true
	}
	if now.Before(ep.until) {
		return false
	}
	ep.until, ep.fails = time.Time{}, 0 // back in
	return true
}

// Done gives back a lease from Pick with the request's outcome. Every
// successful Pick must be matched by exactly one Done. Outcomes of an
// endpoint that is ejected, or no longer in the set, count nothing more.
func (e *Ejector) Done(l Lease, o Outcome) {
	ep := l.ep
	if ep == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ep.outstanding--
	if o == Abandoned || e.byName[ep.name] != ep {
		return
	}
	now := e.cfg.Now()
	if !ep.until.IsZero() && now.Before(ep.until) {
		return
	}
	if o == Succeeded {
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
