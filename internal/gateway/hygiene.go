package gateway

import (
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/proxy"
)

// ReasonMalformed is the reason code of a request refused by request
// hygiene, whatever the protocol: the guard's refusals of HTTP/1.x heads
// and the handler's of HTTP/2 requests.
const ReasonMalformed = "malformed_request"

// hygiene is the pipeline's first stage. An HTTP/2 request meets the rules
// the guard applied to HTTP/1.x heads (names, limits); then nothing a
// client sends may pose as Ward's own headers, in any spelling, or as the
// app's proxy (httpoxy), before routes and conditions read the headers.
func (g *Gateway) hygiene(x *exchange) pipeline.Refusal {
	r := x.R
	if err := g.guard.Check(r); err != nil {
		return pipeline.Refuse(pipeline.Malformed.WithStatus(err.Status), err.Reason)
	}
	proxy.StripWard(r.Header)
	r.Header.Del("Proxy")
	return pipeline.Refusal{}
}
