package gateway

import (
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/proxy"
)

// inspect runs the route's WAF. It comes after authorization and the rate
// limit: inspection is the dearest stage, so requests that will be refused
// anyway (no credential, no permission, over their limit) never pay for
// it, and before forward, which writes the request record with its
// finding. A body the rules read is received here, by the body stage's
// own machinery, and inspected in its buffers; forward then sends those
// same buffers. An off route costs one comparison.
func (g *Gateway) inspect(x *exchange) pipeline.Refusal {
	guard := x.State.route.waf
	if guard == nil {
		return pipeline.Refusal{}
	}
	var body [][]byte
	if guard.WantsBody(x.R) {
		if ref := g.prepareBody(x); ref.Refused() {
			return ref
		}
		x.State.bodyReady = true
		body, _ = proxy.Buffered(x.R.Body) // nil when streamed: over the bound
	}
	f := guard.Check(x.R, body)
	x.State.waf = f
	if f.Refuse {
		return pipeline.Refuse(pipeline.WAF, f.Detail)
	}
	return pipeline.Refusal{}
}
