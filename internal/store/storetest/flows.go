package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/store"
)

func newFlow(dest, path string, end time.Time, count uint64) flows.Record {
	r := flows.Record{
		Key: flows.Key{Source: "svc/catalog", Dest: dest, Method: "GET", Path: path, Decision: flows.Allow, Reason: "allowed",
			Policy: dest + "-callers", Class: 2},
		Start: end.Add(-10 * time.Second), End: end, Count: count, LatencyUS: 1000 * count,
		Reporter: "spiffe://example.org/svc/" + dest,
	}
	r.Buckets[0], r.Buckets[flows.NumBuckets-1] = count-1, 1
	return r
}

func testFlows(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newFlow("orders", "/orders/{id}", t0.Add(-2*time.Hour), 5)
	b := newFlow("orders", "/orders", t0.Add(-time.Minute), 7)
	c := newFlow("catalog", "/items", t0, 1<<40)
	c.Decision, c.Reason, c.Policy, c.Class = flows.WouldDeny, "no_rule_matches", "", 4
	must(t, s.PutFlows(ctx, []flows.Record{a, b, c}))
	must(t, s.PutFlows(ctx, nil))

	list := func(f store.FlowFilter) []flows.Record {
		t.Helper()
		got, err := s.ListFlows(ctx, f)
		must(t, err)
		return got
	}
	if got := list(store.FlowFilter{From: t0.Add(-3 * time.Hour)}); !reflect.DeepEqual(got, []flows.Record{a, b, c}) {
		t.Errorf("all flows:\n got %+v\nwant %+v", got, []flows.Record{a, b, c})
	}
	if got := list(store.FlowFilter{From: t0.Add(-time.Hour)}); !reflect.DeepEqual(got, []flows.Record{b, c}) {
		t.Errorf("the last hour:\n got %+v\nwant %+v", got, []flows.Record{b, c})
	}
	if got := list(store.FlowFilter{From: t0.Add(-3 * time.Hour), To: t0.Add(-time.Minute), Dest: "orders"}); !reflect.DeepEqual(got, []flows.Record{a, b}) {
		t.Errorf("orders up to a minute ago:\n got %+v\nwant %+v", got, []flows.Record{a, b})
	}
	if got := list(store.FlowFilter{From: t0.Add(-3 * time.Hour), Dest: "nobody"}); len(got) != 0 {
		t.Errorf("flows of an unknown service: %+v", got)
	}

	n, err := s.DeleteFlowsBefore(ctx, t0.Add(-time.Hour))
	must(t, err)
	if n != 1 {
		t.Errorf("retention deleted %d records, want 1", n)
	}
	if got := list(store.FlowFilter{From: time.Time{}}); !reflect.DeepEqual(got, []flows.Record{b, c}) {
		t.Errorf("after retention:\n got %+v\nwant %+v", got, []flows.Record{b, c})
	}
}
