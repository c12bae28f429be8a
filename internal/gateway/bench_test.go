package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
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
	request := func() *http.Request {
		r := httptest.NewRequest("GET", "https://localhost/orders/1", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("X-Api-Key", e.apiKey)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	for n := 1; n <= len(names); n++ {
		h := prefix(n)
		if n == 1 { // warm the pools, caches and connections first
			warm := prefix(len(names))
			for range 200 {
				warm.ServeHTTP(httptest.NewRecorder(), request())
			}
		}
		b.Run(fmt.Sprintf("%d-%s", n, names[n-1]), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, request())
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", names[n-1], w.Code, w.Body)
				}
			}
		})
	}
}

// benchJSON is a 1 KiB JSON body of an ordinary API call.
var benchJSON = func() string {
	s := `{"customer":{"name":"Zoë Martin","email":"zoe@example.com","phone":"+33 6 12 34 56 78"},` +
		`"items":[{"sku":"sku-1234","qty":2,"price":"19.99"},{"sku":"sku-88","qty":1,"price":"5.00"}],` +
		`"shipping":{"line1":"10 rue de la Paix","city":"Paris","postcode":"75002","country":"FR"},` +
		`"note":"Please leave it at the door — thanks! Call me when you arrive.",` +
		`"gift":true,"message":"Happy birthday, Jo! Open it on Sunday.","coupon":"SPRING-24",` +
		`"pad":"`
	for len(s) < 1022 {
		s += "x"
	}
	return s + `"}`
}()

// BenchmarkWAFStage measures the waf stage: the pipeline up to limit and
// up to waf, on a route with the WAF off, in dry-run and enforced at
// paranoia 1 and 2, for a GET and a 1 KiB JSON POST. The stage's price is
// the difference between the two lines of a route; off must add nothing.
func BenchmarkWAFStage(b *testing.B) {
	e := newEdgeWith(b, func(c *gateway.Config) { c.Events = discard{} })
	names, prefix := gateway.Stages(e.gw)
	at := map[string]int{}
	for i, n := range names {
		at[n] = i + 1
	}
	for _, route := range []struct{ name, path string }{
		{"off", "/catalog/x"}, {"dry-run", "/catalog/waf-dry/x"}, {"enforce-pl1", "/catalog/waf/x"}, {"enforce-pl2", "/catalog/waf-p2/x"},
	} {
		for _, method := range []string{"GET", "POST"} {
			request := func() *http.Request {
				var r *http.Request
				if method == "GET" {
					r = httptest.NewRequest("GET", "https://localhost"+route.path+"?page=2&sort=created", nil)
				} else {
					r = httptest.NewRequest("POST", "https://localhost"+route.path, strings.NewReader(benchJSON))
					r.Header.Set("Content-Type", "application/json")
				}
				r.RemoteAddr = "127.0.0.1:40000"
				r.Header.Set("User-Agent", "shop/1.0")
				r.Header.Set("Accept", "application/json")
				return r
			}
			for _, stage := range []string{"limit", "waf"} {
				h := prefix(at[stage])
				b.Run(route.name+"/"+method+"/to-"+stage, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						w := httptest.NewRecorder()
						h.ServeHTTP(w, request())
						if w.Code != http.StatusOK {
							b.Fatalf("%d %s", w.Code, w.Body)
						}
					}
				})
			}
		}
	}
}
