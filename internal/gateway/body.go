package gateway

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardsec/ward/internal/proxy"
)

// ReasonTooManyConcurrent refuses a request past the per-source cap of
// concurrent requests.
const ReasonTooManyConcurrent = "too_many_concurrent_requests"

// admit takes one of the source network's concurrent-request slots; past
// the cap the request is refused with 429 and Retry-After, before any of
// its body is read. release is never nil.
func (g *Gateway) admit(x *exchange) (release func(), out outcome) {
	release, ok := g.sources.Acquire(x.source)
	if !ok {
		x.w.Header().Set("Retry-After", "1")
		closeAfter(x)
		return func() {}, outcome{http.StatusTooManyRequests, ReasonTooManyConcurrent,
			"over " + strconv.Itoa(g.sources.Max()) + " concurrent requests from " + proxy.SourceNetwork(x.source)}
	}
	return release, outcome{}
}

// prepareBody applies the route's body limit and receives the body (whole
// up to the buffer bound, under the minimum rate and the process budget)
// before anything is forwarded; gRPC streams pass as they come. done
// returns the buffers once the request was forwarded; it is never nil.
func (g *Gateway) prepareBody(x *exchange) (done func(), out outcome) {
	done, err := g.bodies.Prepare(x.w, x.r, x.route.body, isGRPC(x.r))
	if err != nil {
		closeAfter(x)
		return done, outcome{err.Status, err.Reason, err.Error()}
	}
	return done, outcome{}
}

// closeAfter ends an HTTP/1 connection after the refusal of a request
// whose body was not read: net/http would otherwise read up to 256 KiB of
// it before answering, at whatever pace the client sends.
func closeAfter(x *exchange) {
	if x.r.ProtoMajor == 1 {
		x.w.Header().Set("Connection", "close")
	}
}

// isGRPC reports a gRPC request (HTTP/2 with a gRPC content type).
func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return r.ProtoMajor == 2 && len(ct) >= 16 && ct[:16] == "application/grpc"
}

// bodyGauge reports the request body bytes the process holds in buffers.
func bodyGauge(b *proxy.Bodies) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ward_gateway_body_buffered_bytes",
		Help: "Request body bytes buffered by the process (all roles sharing its budget), against --body-budget.",
	}, func() float64 { return float64(b.Buffered()) })
}
