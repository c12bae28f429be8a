package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/gateway"
)

// BenchmarkFlows measures the pipeline without and with flow counting,
// up to the authorization and limit (the request is refused at no cost
// of forwarding: the record hook still runs) and whole: the difference
// is what flows cost per request.
func BenchmarkFlows(b *testing.B) {
	for _, tc := range []struct {
		name  string
		table *flows.Table
	}{{"off", nil}, {"on", flows.NewTable()}} {
		e := newEdgeWith(b, func(c *gateway.Config) { c.Events, c.Flows = discard{}, tc.table })
		tok := e.jwt("alice", "orders:read", nil)
		names, prefix := gateway.Stages(e.gw)
		h := prefix(len(names))
		short := prefix(len(names) - 1)
		request := func() *http.Request {
			r := httptest.NewRequest("GET", "https://localhost/orders/1", nil)
			r.RemoteAddr = "127.0.0.1:40000"
			r.Header.Set("X-Api-Key", e.apiKey)
			r.Header.Set("Authorization", "Bearer "+tok)
			return r
		}
		for range 200 {
			h.ServeHTTP(httptest.NewRecorder(), request())
		}
		b.Run(tc.name+"/to-"+names[len(names)-2], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				short.ServeHTTP(httptest.NewRecorder(), request())
			}
		})
		b.Run(tc.name+"/whole", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, request())
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
		if tc.table != nil {
			if recs := tc.table.Flush(time.Now()); len(recs) == 0 || recs[0].Path != "/orders/{id}" {
				b.Fatalf("flows counted %+v, want edges to /orders/{id}", recs)
			}
		}
	}
}
