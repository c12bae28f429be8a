package sidecar

import (
	"net/http"
	"strconv"

	"github.com/wardsec/ward/internal/audit"
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

// refuseMalformed answers a request that broke request hygiene (an HTTP/2
// request the guard's rules refuse; see proxy.Guard.Check) the way the
// guard answers an HTTP/1.x one, and audits it alike.
func (s *Sidecar) refuseMalformed(w http.ResponseWriter, r *http.Request, p peer, err *proxy.RequestError) {
	actor := ""
	if !p.id.IsZero() {
		actor = p.id.String()
	}
	s.metrics.observe(actor, s.cfg.Service, "deny", err.Status, 0)
	s.emit(r.Context(), audit.Event{Type: "sidecar.request", Actor: actor, Subject: s.id.String(), Decision: "deny",
		Reason: reasonMalformed, Source: r.RemoteAddr, Service: s.cfg.Service,
		Fields: map[string]string{"status": strconv.Itoa(err.Status), "message": err.Reason, "proto": r.Proto}})
	w.Header().Set(headerDenyReason, reasonMalformed)
	http.Error(w, err.Reason, err.Status)
}
