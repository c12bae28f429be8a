// Package flows turns a proxy's request records into per-edge counters:
// who called which service, with what method on which path template, what
// was decided and why, how the calls ended and how long they took. A proxy
// keeps one Table in memory, adds every request to it without allocating
// (once its edges are known), and hands the counters of each interval to
// the server, which keeps them with a retention and answers queries by
// time window. The service graph, the "why" view and policy suggestions
// read them.
//
// Paths are bounded twice: each segment that looks like an identifier
// (digits, a UUID, a long hex string, a long opaque token) becomes {id},
// and a table holds at most MaxEdges edges per interval; requests of edges
// beyond the cap are counted under the path "{other}".
package flows

import (
	"sync"
	"time"
)

// Limits of a Table and of what a proxy ships.
const (
	// MaxEdges is how many distinct edges a table counts per interval;
	// beyond it, new paths count as OtherPath.
	MaxEdges = 4096
	// maxMember bounds each member of an edge's key but the path (cut
	// longer), maxKey the key as a whole.
	maxMember = 128
	maxKey    = 8*maxMember + maxTemplate
	// OtherPath is the path of the requests counted after MaxEdges.
	OtherPath = "{other}"
	// IDSegment replaces a path segment that looks like an identifier.
	IDSegment = "{id}"
)

// Decisions of an edge.
const (
	Allow     = "allow"
	Deny      = "deny"
	WouldDeny = "would_deny" // a dry-run policy would have denied it
)

// LatencyBucketsMS are the upper bounds, in milliseconds, of the latency
// histogram's buckets; one more bucket counts what is slower.
var LatencyBucketsMS = [...]int64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500}

// NumBuckets is the length of a histogram: the bounded buckets and +Inf.
const NumBuckets = len(LatencyBucketsMS) + 1

// Sample is one request as a proxy's record hook sees it.
type Sample struct {
	Source   string // the caller: a SPIFFE ID path ("svc/catalog") or a kind of client ("public", "app/billing")
	Dest     string // the service called
	Method   string
	Path     string // as received; templated by Observe
	Decision string // Allow, Deny or WouldDeny
	Reason   string
	Policy   string // the policy that decided, when one did
	Status   int
	Latency  time.Duration
}

// Key names one edge.
type Key struct {
	Source   string `json:"source"`
	Dest     string `json:"dest"`
	Method   string `json:"method"`
	Path     string `json:"path"` // the template
	Decision string `json:"decision"`
	Reason   string `json:"reason,omitempty"`
	Policy   string `json:"policy,omitempty"`
	Class    int    `json:"class"` // status class: 2 for 2xx ... 5 for 5xx; 0 for none
}

// Record is the counters of one edge over one interval.
type Record struct {
	Key
	Start     time.Time          `json:"start"`
	End       time.Time          `json:"end"`
	Count     uint64             `json:"count"`
	LatencyUS uint64             `json:"latency_us"` // sum
	Buckets   [NumBuckets]uint64 `json:"buckets"`
	// Reporter is the SPIFFE ID of the proxy that counted, set by the
	// server from the shipper's certificate.
	Reporter string `json:"reporter,omitempty"`
}

type counter struct {
	key       Key
	count     uint64
	latencyUS uint64
	buckets   [NumBuckets]uint64
}

// Table counts the requests of one proxy. It is safe for concurrent use.
type Table struct {
	mu      sync.Mutex
	start   time.Time
	edges   map[string]*counter
	buf     []byte // the key being built, under mu
	spilled uint64 // requests counted as OtherPath since the start
}

// NewTable returns an empty table whose first interval starts now.
func NewTable() *Table {
	return &Table{start: time.Now(), edges: make(map[string]*counter, 64), buf: make([]byte, 0, maxKey)}
}

// Observe counts one request. Once the edge is known it allocates nothing.
func (t *Table) Observe(s Sample) {
	class := 0
	if s.Status >= 100 && s.Status < 600 {
		class = s.Status / 100
	}
	us := max(s.Latency.Microseconds(), 0)
	b := bucket(us)
	t.mu.Lock()
	k := appendKey(t.buf[:0], &s, class, false)
	c := t.edges[string(k)]
	if c == nil {
		if len(t.edges) >= MaxEdges {
			k = appendKey(t.buf[:0], &s, class, true)
			c = t.edges[string(k)]
			t.spilled++
		}
		if c == nil {
			c = &counter{key: Key{Source: cut(s.Source, maxMember), Dest: cut(s.Dest, maxMember), Method: cut(s.Method, maxMember),
				Path: Template(s.Path), Decision: cut(s.Decision, maxMember), Reason: cut(s.Reason, maxMember), Policy: cut(s.Policy, maxMember), Class: class}}
			if len(t.edges) >= MaxEdges {
				c.key.Path = OtherPath
			}
			t.edges[string(k)] = c
		}
	}
	c.count++
	c.latencyUS += uint64(us)
	c.buckets[b]++
	t.buf = k[:0]
	t.mu.Unlock()
}

// Flush returns the counters of the interval that ends now and starts the
// next one. It returns nothing when no request was counted.
func (t *Table) Flush(now time.Time) []Record {
	t.mu.Lock()
	edges, start := t.edges, t.start
	t.edges, t.start = make(map[string]*counter, len(edges)), now
	t.mu.Unlock()
	out := make([]Record, 0, len(edges))
	for _, c := range edges {
		out = append(out, Record{Key: c.key, Start: start, End: now, Count: c.count, LatencyUS: c.latencyUS, Buckets: c.buckets})
	}
	return out
}

// Spilled returns how many requests were counted as OtherPath because the
// table was full.
func (t *Table) Spilled() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.spilled
}

func bucket(us int64) int {
	for i, ms := range LatencyBucketsMS {
		if us <= ms*1000 {
			return i
		}
	}
	return len(LatencyBucketsMS)
}

// appendKey appends the edge key of s to b: its members separated by NUL
// bytes, the path templated (or OtherPath), each member cut to fit maxKey.
func appendKey(b []byte, s *Sample, class int, other bool) []byte {
	for _, m := range [...]string{s.Source, s.Dest, s.Method, s.Decision, s.Reason, s.Policy} {
		b = append(b, cut(m, maxMember)...)
		b = append(b, 0)
	}
	b = append(b, byte('0'+class), 0)
	if other {
		return append(b, OtherPath...)
	}
	return templateInto(b, s.Path)
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
