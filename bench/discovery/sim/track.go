package main

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A change is one instance appearing (add) or leaving the set of a
// service, as the benchmark made it.
type change struct {
	svc      int
	addr     string
	add      bool
	answered time.Time // when the server's answer came back; zero until then
	failed   bool
	// seen is when each interested proxy (callers(svc), in that order)
	// first held a snapshot reflecting the change; it may precede
	// answered, since the server may publish before its answer arrives.
	seen [2]time.Time
}

// tracker matches the changes made against what the proxies see.
type tracker struct {
	n                  int
	mu                 sync.Mutex
	pend               [][]*change          // open changes, by service
	known              [][2]map[string]bool // by proxy: endpoints of the services it calls (reach)
	meas               []*change            // changes made inside the window
	open               bool                 // the window is open
	docs               int64                // Service documents in the snapshots received in the window
	snapN              int64                // snapshots received in the window that changed
	snaps, bytes, errs atomic.Int64         // every snapshot answer received
}

func newTracker(n int) *tracker {
	return &tracker{n: n, pend: make([][]*change, n), known: make([][2]map[string]bool, n)}
}

// reach are the services proxy p may call: p+1 and p+2 (see callers).
func reach(p, n int) [2]int { return [2]int{(p + 1) % n, (p + 2) % n} }

func (t *tracker) newChange(svc int, addr string, add bool) *change {
	c := &change{svc: svc, addr: addr, add: add}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pend[svc] = append(t.pend[svc], c)
	if t.open {
		t.meas = append(t.meas, c)
	}
	return c
}

// answer records the server's answer to the request that made c.
func (t *tracker) answer(c *change, err error) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		c.failed = true
		t.prune(c.svc)
		return
	}
	c.answered = now
	t.prune(c.svc)
}

func (t *tracker) prune(svc int) {
	t.pend[svc] = slices.DeleteFunc(t.pend[svc], func(c *change) bool {
		return c.failed || (!c.answered.IsZero() && !c.seen[0].IsZero() && !c.seen[1].IsZero())
	})
}

// observe takes proxy p's new snapshot, received at now: the endpoints of
// every Service document in it, by service index.
func (t *tracker) observe(p int, eps map[int]map[string]bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open {
		t.docs += int64(len(eps))
		t.snapN++
	}
	for j, s := range reach(p, t.n) {
		e, ok := eps[s]
		if !ok {
			continue // its part lacks a service it may call: it sees nothing of it
		}
		t.known[p][j] = e
		// p is callers(s)[j]: reach and callers mirror each other.
		for _, c := range t.pend[s] {
			if c.seen[j].IsZero() && c.add == e[c.addr] {
				c.seen[j] = now
			}
		}
		t.prune(s)
	}
}

// lagging names a proxy that does not yet know every address in want
// (by service) of the services it calls, or returns "".
func (t *tracker) lagging(want map[int][]string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p := range t.n {
		for j, s := range reach(p, t.n) {
			for _, a := range want[s] {
				if !t.known[p][j][a] {
					return svcName(p) + " lacks " + a + " of " + svcName(s)
				}
			}
		}
	}
	return ""
}

func (t *tracker) openWindow(time.Time) {
	t.mu.Lock()
	t.open = true
	t.mu.Unlock()
}

func (t *tracker) closeWindow(time.Time) {
	t.mu.Lock()
	t.open = false
	t.mu.Unlock()
}

func (t *tracker) snapshotCounts() (n, bytes int64) { return t.snaps.Load(), t.bytes.Load() }

func (t *tracker) servicesPerSnapshot() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.snapN == 0 {
		return 0
	}
	return float64(t.docs) / float64(t.snapN)
}

// delayStats are the propagation delays of the window's changes: one per
// change and interested proxy.
type delayStats struct {
	Changes     int     `json:"changes"`      // made in the window and answered
	Failed      int     `json:"failed"`       // refused or not answered
	Count       int     `json:"count"`        // delays measured
	Unseen      int     `json:"unseen"`       // change × proxy pairs never seen (within the grace period)
	BeforeReply int     `json:"before_reply"` // seen before the answer arrived (counted as 0)
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	AddP99ms    float64 `json:"add_p99_ms"`
	RemoveP99ms float64 `json:"remove_p99_ms"`
}

func (t *tracker) delays() delayStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	var st delayStats
	var all, adds, removes []time.Duration
	for _, c := range t.meas {
		if c.failed || c.answered.IsZero() {
			st.Failed++
			continue
		}
		st.Changes++
		for _, s := range c.seen {
			if s.IsZero() {
				st.Unseen++
				continue
			}
			d := s.Sub(c.answered)
			if d < 0 {
				d = 0
				st.BeforeReply++
			}
			all = append(all, d)
			if c.add {
				adds = append(adds, d)
			} else {
				removes = append(removes, d)
			}
		}
	}
	st.Count = len(all)
	st.P50ms, st.P90ms, st.P99ms, st.MaxMs = pct(all, 0.50), pct(all, 0.90), pct(all, 0.99), pct(all, 1)
	st.AddP99ms, st.RemoveP99ms = pct(adds, 0.99), pct(removes, 0.99)
	return st
}

// pct is the p-quantile of ds in milliseconds (nearest rank).
func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	i := int(p*float64(len(ds))+0.999999) - 1
	i = max(0, min(i, len(ds)-1))
	return float64(ds[i].Microseconds()) / 1000
}
