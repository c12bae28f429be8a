package control

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/flows"
)

// FuzzFlowBatch: whatever a proxy sends, a batch checkFlows accepts holds
// only records the store and the dashboard can take.
func FuzzFlowBatch(f *testing.F) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	ok, _ := json.Marshal(FlowBatch{Records: []flows.Record{{Key: flows.Key{Source: "gateway/edge", Dest: "orders", Method: "GET", Path: "/orders/{id}", Decision: flows.Allow, Class: 2},
		Start: now.Add(-10 * time.Second), End: now, Count: 1}}})
	f.Add(ok)
	f.Add([]byte(`{"records":[{"source":"a","dest":"orders","method":"GET","path":"/","decision":"deny","class":9,"count":1}]}`))
	f.Add([]byte(`{"records":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b FlowBatch
		if json.Unmarshal(data, &b) != nil {
			return
		}
		if checkFlows(b, "svc", "orders", now, DefaultFlowRetention) != nil {
			return
		}
		for _, r := range b.Records {
			switch {
			case r.Dest != "orders", r.Count == 0, !r.End.After(r.Start), r.End.After(now.Add(maxClockSkew)),
				r.Class < 0 || r.Class > 5, r.Source == "", r.Path == "", len(r.Path) > maxFlowMember:
				t.Fatalf("accepted %+v", r)
			}
		}
	})
}

// FuzzFlowQuery: a window query is refused or names a window that ends
// after it starts and lasts at most maxFlowWindow.
func FuzzFlowQuery(f *testing.F) {
	for _, q := range []string{"since=1h", "since=-1h", "from=2030-01-01T00:00:00Z&to=2030-01-02T00:00:00Z", "since=1h&from=x", "since=9999999h", "service=orders"} {
		f.Add(q)
	}
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, q string) {
		if _, err := url.ParseQuery(q); err != nil {
			return
		}
		r := httptest.NewRequest("GET", "/v1/flows", nil)
		r.URL.RawQuery = q
		fl, err := parseFlowQuery(r, now)
		if err != nil {
			return
		}
		if !fl.To.After(fl.From) || fl.To.Sub(fl.From) > maxFlowWindow {
			t.Fatalf("%q: window %s to %s", q, fl.From, fl.To)
		}
	})
}
