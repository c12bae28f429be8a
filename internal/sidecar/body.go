package sidecar

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/proxy"
)

// prepareBody applies the service's body limit and receives the body
// (whole up to the buffer bound, under the minimum rate and the process
// budget) before anything reaches the app, so that a slow or oversized
// body never holds one of the app's connections; gRPC streams pass as
// they come (they share multiplexed connections to the app). A refusal
// here is recorded again as a deny with the body's reason; the buffers go
// back once the app has answered.
func (s *Sidecar) prepareBody(x *exchange) pipeline.Refusal {
	if x.State.bodyReady {
		return pipeline.Refusal{} // received by the WAF stage
	}
	limit := s.snap().services[s.cfg.Service].BodyLimit
	done, err := s.bodies.Prepare(&x.W, x.R, limit, proxy.IsGRPC(x.R))
	x.Defer(done)
	if err != nil {
		if x.R.ProtoMajor == 1 {
			// net/http would otherwise read the unread body before answering.
			x.W.Header().Set("Connection", "close")
		}
		return pipeline.Refuse(pipeline.Lookup(err.Reason).WithStatus(err.Status), err.Error())
	}
	return pipeline.Refusal{}
}

// bodyGauge reports the request body bytes the process holds in buffers.
func bodyGauge(b *proxy.Bodies) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ward_sidecar_body_buffered_bytes",
		Help: "Request body bytes buffered by the process (all roles sharing its budget), against --body-budget.",
	}, func() float64 { return float64(b.Buffered()) })
}

// inspect runs the service's WAF after authorization (callers the policy
// refuses never cost an inspection) and before the record, which carries
// its finding. A body the rules read is received here, by prepareBody,
// and inspected in its buffers; the app gets those same buffers.
func (s *Sidecar) inspect(x *exchange) pipeline.Refusal {
	guard := s.snap().waf
	if guard == nil {
		return pipeline.Refusal{}
	}
	var body [][]byte
	if guard.WantsBody(x.R) {
		if ref := s.prepareBody(x); ref.Refused() {
			return ref
		}
		x.State.bodyReady = true
		body, _ = proxy.Buffered(x.R.Body) // nil when streamed: over the bound
	}
	x.State.waf = guard.Check(x.R, body)
	if x.State.waf.Refuse {
		return pipeline.Refuse(pipeline.WAF, x.State.waf.Detail)
	}
	return pipeline.Refusal{}
}
