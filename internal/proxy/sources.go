package proxy

import (
	"net/netip"
	"sync"
)

// SourceNetwork returns the unit Ward treats as one source for per-source
// limits: an IPv4 address (IPv4-mapped IPv6 included), or the /64 of an
// IPv6 address, since one host usually owns a whole /64 and its privacy
// addresses rotate inside it. IPv4 is not widened to a /24: the clients of
// one provider or campus would share a limit, while an attacker rarely
// holds a whole /24 and gains little from one. Anything unparseable is
// returned unchanged.
func SourceNetwork(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

// SourceCap bounds the concurrent requests of each source network, so
// that one source cannot take every slot others need (security invariant
// 9). Its state holds only the sources with requests in flight.
type SourceCap struct {
	max      int
	mu       sync.Mutex
	inflight map[string]int
}

// NewSourceCap returns a cap of max concurrent requests per source network
// (0: [DefaultMaxPerSource]).
func NewSourceCap(max int) *SourceCap {
	if max <= 0 {
		max = DefaultMaxPerSource
	}
	return &SourceCap{max: max, inflight: map[string]int{}}
}

// Max is the cap.
func (c *SourceCap) Max() int { return c.max }

// Acquire takes a slot for the source address ip without waiting. When ok,
// release must be called once the request is over.
func (c *SourceCap) Acquire(ip string) (release func(), ok bool) {
	key := SourceNetwork(ip)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight[key] >= c.max {
		return nil, false
	}
	c.inflight[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.inflight[key]--; c.inflight[key] <= 0 {
				delete(c.inflight, key)
			}
		})
	}, true
}
