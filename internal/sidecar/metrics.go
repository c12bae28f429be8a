package sidecar

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	refused  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_sidecar_requests_total", Help: "Inbound requests by source identity, destination service, decision and status class.",
		}, []string{"source", "destination", "decision", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ward_sidecar_request_duration_seconds", Help: "Inbound request latency through the sidecar, app included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"source", "destination", "decision"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_sidecar_connections_refused_total", Help: "Inbound connections refused at the mTLS handshake, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.requests, m.latency, m.refused)
	return m
}

func (m *metrics) observe(source, dest, decision string, status int, d time.Duration) {
	class := "0xx"
	if status >= 100 && status < 600 {
		class = strconv.Itoa(status/100) + "xx"
	}
	m.requests.WithLabelValues(source, dest, decision, class).Inc()
	m.latency.WithLabelValues(source, dest, decision).Observe(d.Seconds())
}
