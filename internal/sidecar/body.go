package sidecar

import (
	"maps"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/proxy"
)

// prepareBody applies the service's body limit and receives the body
// (whole up to the buffer bound, under the minimum rate and the process
// budget) before anything reaches the app, so that a slow or oversized
// body never holds one of the app's connections; gRPC streams pass as
// they come (they share multiplexed connections to the app). On refusal it
// records ev again as a deny with the body's reason, answers and returns ok
// false; otherwise done returns the buffers once the app has answered.
func (s *Sidecar) prepareBody(w http.ResponseWriter, r *http.Request, ev *audit.Event) (done func(), ok bool) {
	limit := s.conf.Load().services[s.cfg.Service].BodyLimit
	done, err := s.bodies.Prepare(w, r, limit, isGRPC(r))
	if err != nil {
		ev.Decision, ev.Reason = "deny", err.Reason
		ev.Fields = maps.Clone(ev.Fields) // the allow record keeps its own
		ev.Fields["message"] = err.Error()
		s.emit(r.Context(), *ev)
		if r.ProtoMajor == 1 {
			// net/http would otherwise read the unread body before answering.
			w.Header().Set("Connection", "close")
		}
		w.Header().Set(headerDenyReason, err.Reason)
		if err.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, "ward: "+err.Reason, err.Status)
		return done, false
	}
	return done, true
}

// bodyGauge reports the request body bytes the process holds in buffers.
func bodyGauge(b *proxy.Bodies) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ward_sidecar_body_buffered_bytes",
		Help: "Request body bytes buffered by the process (all roles sharing its budget), against --body-budget.",
	}, func() float64 { return float64(b.Buffered()) })
}
