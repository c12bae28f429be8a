package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/gateway"
)

// discard is an audit sink that keeps nothing, so that a long benchmark
// does not measure a growing slice.
type discard struct{}

func (discard) Emit(context.Context, audit.Event) error { return nil }

// BenchmarkStages measures the gateway's pipeline one prefix at a time,
// for a ward-b request (API key, JWT, policy, record; the last prefix
// forwards through the mesh to the orders sidecar and app): each stage's
// price is the difference between its line and the one before.
// bench/gateway/run.sh prints the differences.
func BenchmarkStages(b *testing.B) {
	e := newEdgeWith(b, func(c *gateway.Config) { c.Events = discard{} })
	tok := e.jwt("alice", "orders:read", nil)
	names, prefix := gateway.Stages(e.gw)
	for n := 1; n <= len(names); n++ {
		h := prefix(n)
		b.Run(fmt.Sprintf("%d-%s", n, names[n-1]), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest("GET", "https://localhost/orders/1", nil)
				r.RemoteAddr = "127.0.0.1:40000"
				r.Header.Set("X-Api-Key", e.apiKey)
				r.Header.Set("Authorization", "Bearer "+tok)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", names[n-1], w.Code, w.Body)
				}
			}
		})
	}
}
