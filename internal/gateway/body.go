package gateway

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/proxy"
)

// admit takes one of the source network's concurrent-request slots; past
// the cap the request is refused with 429 and Retry-After, before any of
// its body is read. The slot is released once the response is over.
func (g *Gateway) admit(x *exchange) pipeline.Refusal {
	release, ok := g.sources.Acquire(x.Source)
	if !ok {
		closeAfter(x)
		return pipeline.Refuse(pipeline.TooManyRequests,
			"over "+strconv.Itoa(g.sources.Max())+" concurrent requests from "+proxy.SourceNetwork(x.Source))
	}
	x.Defer(release)
	return pipeline.Refusal{}
}

// prepareBody applies the route's body limit and receives the body (whole
// up to the buffer bound, under the minimum rate and the process budget)
// before anything is forwarded; gRPC streams pass as they come. The
// buffers go back once the response is over.
func (g *Gateway) prepareBody(x *exchange) pipeline.Refusal {
	done, err := g.bodies.Prepare(&x.W, x.R, x.State.route.body, proxy.IsGRPC(x.R))
	x.Defer(done)
	if err != nil {
		closeAfter(x)
		return pipeline.Refuse(pipeline.Lookup(err.Reason).WithStatus(err.Status), err.Error())
	}
	return pipeline.Refusal{}
}

// closeAfter ends an HTTP/1 connection after the refusal of a request
// whose body was not read: net/http would otherwise read up to 256 KiB of
// it before answering, at whatever pace the client sends.
func closeAfter(x *exchange) {
	if x.R.ProtoMajor == 1 {
		x.W.Header().Set("Connection", "close")
	}
}

// bodyGauge reports the request body bytes the process holds in buffers.
func bodyGauge(b *proxy.Bodies) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ward_gateway_body_buffered_bytes",
		Help: "Request body bytes buffered by the process (all roles sharing its budget), against --body-budget.",
	}, func() float64 { return float64(b.Buffered()) })
}
