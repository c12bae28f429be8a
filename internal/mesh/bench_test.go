package mesh

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkHop measures one request through the mesh client to a service
// over mutual TLS 1.3, on HTTP/2 and on HTTP/1.1 keep-alive, with many
// requests in flight. Client and service run in this process: cpu-ns/op is
// the CPU (user + system) of both ends per request.
//
//	go test -run '^$' -bench Hop -benchmem ./internal/mesh/
func BenchmarkHop(b *testing.B) {
	ca := newAuthority(b)
	orders := serve(b, ca.svid("orders"), nil)
	c := client(b, ca.svid("catalog"), map[string][]string{"orders": {orders.addr}}, Resilience{})
	u, err := c.Upstream("orders")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		hop  http.Handler
		par  int // callers per GOMAXPROCS
	}{{"h2/serial", u.h2, 0}, {"h1/serial", u.h1, 0}, {"h2/par16", u.h2, 16}, {"h1/par16", u.h1, 16}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			if bc.par == 0 {
				runtime.GOMAXPROCS(1) // one caller: RunParallel runs GOMAXPROCS callers
				defer runtime.GOMAXPROCS(runtime.NumCPU())
			} else {
				b.SetParallelism(bc.par)
			}
			cpu := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest(http.MethodGet, "http://orders/x", nil)
				w := &discard{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					w.status = 0
					bc.hop.ServeHTTP(w, req)
					if w.status != http.StatusOK {
						b.Errorf("status %d", w.status)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discard is a ResponseWriter that keeps only the status.
type discard struct {
	h      http.Header
	status int
}

func (d *discard) Header() http.Header { return d.h }
func (d *discard) WriteHeader(s int)   { d.status = s }
func (d *discard) Write(p []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	return len(p), nil
}
