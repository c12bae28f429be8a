package control_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/flows"
)

func flowRec(dest, method string, end time.Time) flows.Record {
	return flows.Record{Key: flows.Key{Source: "gateway/edge", Dest: dest, Method: method, Path: "/orders/{id}", Decision: flows.Allow, Reason: "allowed", Class: 2},
		Start: end.Add(-10 * time.Second), End: end, Count: 3, LatencyUS: 300}
}

// TestFlowsShippedAndQueried (issue 17): proxies ship flow records, the
// server names them with the shipper's identity and sums them per edge
// over the window an operator asks for; what a proxy could not have
// counted is refused whole, and only operators read flows.
func TestFlowsShippedAndQueried(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	orders := ts.svcClient(t, "orders")
	now := time.Now()
	if err := orders.ShipFlows(ctx, []flows.Record{flowRec("orders", "GET", now.Add(-20*time.Second)), flowRec("orders", "GET", now.Add(-10*time.Second)), flowRec("orders", "POST", now)}); err != nil {
		t.Fatal(err)
	}
	if err := ts.gatewayClient(t, "edge").ShipFlows(ctx, []flows.Record{flowRec("catalog", "GET", now)}); err != nil {
		t.Fatalf("a gateway ships flows to any service: %v", err)
	}
	win, err := ts.operator.Flows(ctx, control.FlowQuery{Since: time.Hour, Service: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if len(win.Edges) != 2 {
		t.Fatalf("%d edges of orders, want 2 (GET summed, POST): %+v", len(win.Edges), win.Edges)
	}
	get := win.Edges[0]
	if get.Method != "GET" || get.Count != 6 || get.LatencyUS != 600 || !get.Start.Equal(now.Add(-30*time.Second).Truncate(time.Microsecond)) {
		t.Errorf("summed GET edge: %+v", get)
	}
	all, err := ts.operator.Flows(ctx, control.FlowQuery{Since: time.Hour})
	if err != nil || len(all.Edges) != 3 {
		t.Errorf("every edge: %+v, %v; want 3", all.Edges, err)
	}

	for name, recs := range map[string][]flows.Record{
		"another service": {flowRec("billing", "GET", now)},
		"future":          {flowRec("orders", "GET", now.Add(time.Hour))},
		"no count":        {func() flows.Record { r := flowRec("orders", "GET", now); r.Count = 0; return r }()},
		"bad decision":    {func() flows.Record { r := flowRec("orders", "GET", now); r.Decision = "maybe"; return r }()},
		"long interval":   {func() flows.Record { r := flowRec("orders", "GET", now); r.Start = now.Add(-2 * time.Hour); return r }()},
		"control char":    {func() flows.Record { r := flowRec("orders", "GET", now); r.Path = "/a\nb"; return r }()},
	} {
		err := orders.ShipFlows(ctx, append([]flows.Record{flowRec("orders", "GET", now)}, recs...))
		var ae *control.APIError
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Code() != "bad_flow" {
			t.Errorf("%s: %v, want 400 bad_flow", name, err)
		}
	}
	if after, _ := ts.operator.Flows(ctx, control.FlowQuery{Since: time.Hour, Service: "orders"}); len(after.Edges) != 2 || after.Edges[0].Count != 6 {
		t.Errorf("a refused batch changed the flows: %+v", after.Edges)
	}
	if _, err := orders.Flows(ctx, control.FlowQuery{Since: time.Hour}); err == nil {
		t.Error("a sidecar read the flows")
	}
	if _, err := ts.operatorClient(t, "audra", "auditor").Flows(ctx, control.FlowQuery{Since: time.Hour}); err != nil {
		t.Errorf("an auditor cannot read the flows: %v", err)
	}
	if _, err := ts.operator.Flows(ctx, control.FlowQuery{From: now, To: now.Add(-time.Hour)}); err == nil {
		t.Error("a window that ends before it starts was accepted")
	}
}
