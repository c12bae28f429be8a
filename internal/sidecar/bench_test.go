package sidecar_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/sidecar"
)

// discard is an audit sink that keeps nothing, so that a long benchmark
// does not measure a growing slice.
type discard struct{}

func (discard) Emit(context.Context, audit.Event) error { return nil }

// BenchmarkStages measures the sidecar's inbound pipeline one prefix at a
// time for an allowed call from catalog to orders (the last prefix
// forwards to the app on loopback): each stage's price is the difference
// between its line and the one before. bench/gateway/run.sh prints the
// differences.
func BenchmarkStages(b *testing.B) {
	m := newMesh(b)
	ordersAddr, catalogAddr := freeAddr(b), freeAddr(b)
	m.writeConfig(meshYAML(ordersAddr, catalogAddr))
	orders := m.sidecarWith("orders", ordersAddr, newRecorder(b, nil), nil, func(c *sidecar.Config) { c.Events = discard{} })
	catalog := spiffeid.RequireFromSegments(td, "svc", "catalog")
	names, prefix := sidecar.Stages(orders.sc)
	for n := 1; n <= len(names); n++ {
		h := prefix(n)
		b.Run(fmt.Sprintf("%d-%s", n, names[n-1]), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest("GET", "http://orders/orders/1", nil)
				r.RemoteAddr = "127.0.0.1:40000"
				w := httptest.NewRecorder()
				h.ServeHTTP(w, sidecar.WithPeer(r, catalog))
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", names[n-1], w.Code, w.Body)
				}
			}
		})
	}
}
