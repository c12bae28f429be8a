package sidecar

import (
	"github.com/wardsec/ward/internal/idtoken"
	"github.com/wardsec/ward/internal/pipeline"
	"github.com/wardsec/ward/internal/proxy"
)

// reasonMalformed is the reason code of a request refused by request
// hygiene, whatever the protocol.
const reasonMalformed = "malformed_request"

// forwarded is what a gateway vouches for in its request: read once, before
// every header posing as Ward's is stripped, and believed only with a
// verified identity token.
type forwarded struct {
	token, clientIP, requestID string
}

// hygiene is the pipeline's first stage: an HTTP/2 request meets the rules
// the guard applied to HTTP/1.x heads (see proxy.Guard.Check). What a
// gateway vouches for is read once; then every header posing as Ward's, in
// any spelling, goes before policy reads the headers.
func (s *Sidecar) hygiene(x *exchange) pipeline.Refusal {
	r := x.R
	if err := s.guard.Check(r); err != nil {
		return pipeline.Refuse(pipeline.Malformed.WithStatus(err.Status), err.Reason)
	}
	x.State.fwd = forwarded{token: r.Header.Get(idtoken.Header), clientIP: r.Header.Get(headerClientIP), requestID: r.Header.Get(headerRequestID)}
	proxy.StripWard(r.Header)
	r.Header.Del("Proxy") // httpoxy: never let a caller set the app's proxy
	return pipeline.Refusal{}
}
