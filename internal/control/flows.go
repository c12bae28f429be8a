package control

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/store"
)

// Flows: proxies ship their per-edge counters here, operators query them.
const (
	PathFlows = "/v1/flows" // POST FlowBatch (proxies, mTLS); GET ?since=1h&service=S (operator)

	// DefaultFlowRetention is how long the server keeps flow records.
	DefaultFlowRetention = 7 * 24 * time.Hour
	maxFlowBatch         = 10000
	maxFlowBodyBytes     = 16 << 20
	maxFlowInterval      = time.Hour
	maxFlowMember        = 1024
	maxFlowWindow        = 31 * 24 * time.Hour
	flowPruneEvery       = time.Minute
)

// FlowBatch carries the counters of one or more intervals of a proxy.
type FlowBatch struct {
	Records []flows.Record `json:"records"`
}

// FlowAck says how many records the server stored.
type FlowAck struct {
	Stored int `json:"stored"`
}

// FlowWindow is the answer to a flow query: the window and, per edge, the
// counters summed over it (Start and End are those of the edge's first
// and last interval; Reporter is left empty).
type FlowWindow struct {
	From  time.Time      `json:"from"`
	To    time.Time      `json:"to"`
	Edges []flows.Record `json:"edges"`
}

// flowPrune holds when retention last ran (Unix nanoseconds).
type flowPrune struct{ last atomic.Int64 }

// checkFlows refuses what no proxy could have counted: an empty or
// oversized batch, an interval that does not end after it starts, lasts
// more than an hour, ends in the future or before the retention, counts
// nothing, an unknown decision or status class, a member too long or not
// UTF-8, and, from a sidecar, calls to another service than its own.
func checkFlows(b FlowBatch, kind, name string, now time.Time, retention time.Duration) error {
	if len(b.Records) > maxFlowBatch {
		return badRequest("too_many", fmt.Sprintf("at most %d flow records per batch", maxFlowBatch))
	}
	for i, r := range b.Records {
		bad := func(msg string) error { return badRequest("bad_flow", fmt.Sprintf("flow record %d: %s", i, msg)) }
		switch {
		case !r.End.After(r.Start):
			return bad("the interval must end after it starts")
		case r.End.Sub(r.Start) > maxFlowInterval:
			return bad(fmt.Sprintf("an interval lasts at most %s", maxFlowInterval))
		case r.End.After(now.Add(maxClockSkew)):
			return bad("the interval ends in the future")
		case r.End.Before(now.Add(-retention)):
			return bad("the interval ended before the retention period")
		case r.Count == 0:
			return bad("an edge counts at least one request")
		case r.Class < 0 || r.Class > 5:
			return bad(fmt.Sprintf("status class %d is not between 0 and 5", r.Class))
		case r.Decision != flows.Allow && r.Decision != flows.Deny && r.Decision != flows.WouldDeny:
			return bad(fmt.Sprintf("decision %q is not allow, deny or would_deny", r.Decision))
		case kind == "svc" && r.Dest != name:
			return bad(fmt.Sprintf("a sidecar of %s counts calls to %s only, not to %q", name, name, r.Dest))
		}
		for _, m := range [...]string{r.Source, r.Dest, r.Method, r.Path, r.Reason, r.Policy} {
			if len(m) > maxFlowMember || !utf8.ValidString(m) || strings.ContainsAny(m, "\x00\r\n") {
				return bad(fmt.Sprintf("a member is longer than %d bytes, not UTF-8 or holds a control character", maxFlowMember))
			}
		}
		if r.Source == "" || r.Dest == "" || r.Method == "" || r.Path == "" {
			return bad("source, dest, method and path are required")
		}
	}
	return nil
}

// ingestFlows stores a batch of flow records shipped by a proxy, naming
// the proxy (from its SVID) as their reporter, and applies the retention
// at most once a minute.
func (h *Handler) ingestFlows(w http.ResponseWriter, r *http.Request, caller spiffeid.ID) {
	kind, name, ok := proxyKind(caller)
	if !ok {
		err := &httpError{status: http.StatusForbidden, code: "not_proxy", msg: caller.String() + " is neither a sidecar (svc/NAME) nor a gateway (gateway/NAME); only proxies ship flows"}
		h.denied(r.Context(), audit.Event{Type: "control.flows", Actor: caller.String(), Subject: r.URL.Path, Source: remote(r)}, err)
		h.fail(w, r, err)
		return
	}
	var b FlowBatch
	if err := decodeLimit(w, r, &b, maxFlowBodyBytes); err != nil {
		h.fail(w, r, err)
		return
	}
	now := time.Now()
	retention := h.flowRetention()
	if err := checkFlows(b, kind, name, now, retention); err != nil {
		h.fail(w, r, err)
		return
	}
	for i := range b.Records {
		b.Records[i].Reporter = caller.String()
	}
	if err := h.Store.PutFlows(r.Context(), b.Records); err != nil {
		h.fail(w, r, err)
		return
	}
	if last := h.flowPrune.last.Load(); now.UnixNano()-last > int64(flowPruneEvery) && h.flowPrune.last.CompareAndSwap(last, now.UnixNano()) {
		if _, err := h.Store.DeleteFlowsBefore(context.WithoutCancel(r.Context()), now.Add(-retention)); err != nil {
			h.Log.Warn("flow retention failed", "err", err)
		}
	}
	writeJSON(w, http.StatusOK, FlowAck{Stored: len(b.Records)})
}

func (h *Handler) flowRetention() time.Duration {
	if h.FlowRetention > 0 {
		return h.FlowRetention
	}
	return DefaultFlowRetention
}

// FlowQuery selects a window of flows: since a duration ago (or from a
// time), up to To (zero: now), of one service when Service is set.
type FlowQuery struct {
	Since   time.Duration
	From    time.Time
	To      time.Time
	Service string
}

// parseFlowQuery reads ?since=1h or ?from=RFC3339, ?to=RFC3339 and
// ?service=NAME.
func parseFlowQuery(r *http.Request, now time.Time) (store.FlowFilter, error) {
	q := r.URL.Query()
	f := store.FlowFilter{To: now, Dest: q.Get("service")}
	if v := q.Get("to"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return f, badRequest("bad_query", "to: want an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
		f.To = t
	}
	switch since, from := q.Get("since"), q.Get("from"); {
	case since != "" && from != "":
		return f, badRequest("bad_query", "give since or from, not both")
	case since != "":
		d, err := time.ParseDuration(since)
		if err != nil || d <= 0 {
			return f, badRequest("bad_query", "since: want a positive duration such as 1h or 15m")
		}
		f.From = f.To.Add(-d)
	case from != "":
		t, err := time.Parse(time.RFC3339, from)
		if err != nil {
			return f, badRequest("bad_query", "from: want an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
		f.From = t
	default:
		f.From = f.To.Add(-time.Hour)
	}
	if !f.To.After(f.From) || f.To.Sub(f.From) > maxFlowWindow {
		return f, badRequest("bad_query", fmt.Sprintf("the window must end after it starts and last at most %s", maxFlowWindow))
	}
	return f, nil
}

// listFlows answers a flow query with the window's edges, summed.
func (h *Handler) listFlows(w http.ResponseWriter, r *http.Request, _ spiffeid.ID) {
	win, err := h.FlowWindow(r.Context(), r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, win)
}

// FlowWindow reads the window a request's query names and sums its edges.
func (h *Handler) FlowWindow(ctx context.Context, r *http.Request) (FlowWindow, error) {
	f, err := parseFlowQuery(r, time.Now())
	if err != nil {
		return FlowWindow{}, err
	}
	recs, err := h.Store.ListFlows(ctx, f)
	if err != nil {
		return FlowWindow{}, err
	}
	return FlowWindow{From: f.From, To: f.To, Edges: SumFlows(recs)}, nil
}

// SumFlows adds up the records of each edge, whoever reported them, and
// returns the edges in the order of source, dest, method, path.
func SumFlows(recs []flows.Record) []flows.Record {
	idx := make(map[flows.Key]int, len(recs))
	var out []flows.Record
	for _, r := range recs {
		i, ok := idx[r.Key]
		if !ok {
			r.Reporter = ""
			idx[r.Key] = len(out)
			out = append(out, r)
			continue
		}
		s := &out[i]
		s.Count += r.Count
		s.LatencyUS += r.LatencyUS
		for j := range s.Buckets {
			s.Buckets[j] += r.Buckets[j]
		}
		if r.Start.Before(s.Start) {
			s.Start = r.Start
		}
		if r.End.After(s.End) {
			s.End = r.End
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		if a.Dest != b.Dest {
			return a.Dest < b.Dest
		}
		if a.Method != b.Method {
			return a.Method < b.Method
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		if a.Decision != b.Decision {
			return a.Decision < b.Decision
		}
		return a.Class < b.Class
	})
	return out
}

// ShipFlows sends a proxy's flow records.
func (c *Client) ShipFlows(ctx context.Context, recs []flows.Record) error {
	var ack FlowAck
	return c.do(ctx, c.cred(), http.MethodPost, PathFlows, FlowBatch{Records: recs}, &ack)
}

// Flows returns the edges of a window, summed.
func (c *Client) Flows(ctx context.Context, q FlowQuery) (FlowWindow, error) {
	v := url.Values{}
	if q.Since > 0 {
		v.Set("since", q.Since.String())
	}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339))
	}
	if q.Service != "" {
		v.Set("service", q.Service)
	}
	var out FlowWindow
	err := c.do(ctx, c.cred(), http.MethodGet, PathFlows+"?"+v.Encode(), nil, &out)
	return out, err
}

// TrustDomain is the trust domain of the server the client talks to.
func (c *Client) TrustDomain() spiffeid.TrustDomain { return c.bundle().TrustDomain }
