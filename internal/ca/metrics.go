package ca

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardsec/ward/internal/store"
)

// Metrics are the CA's Prometheus collectors; register them with
// Registerer.MustRegister(ca.Metrics()).
type Metrics struct {
	ca       *CA
	issued   prometheus.Counter
	renewed  prometheus.Counter
	revoked  prometheus.Counter
	refused  *prometheus.CounterVec
	expiring *prometheus.Desc
	caExpiry *prometheus.Desc
}

var _ prometheus.Collector = (*Metrics)(nil)

func newMetrics(c *CA) *Metrics {
	return &Metrics{
		ca:       c,
		issued:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ward_ca_certificates_issued_total", Help: "Certificates issued by enrollment or to Ward's own components."}),
		renewed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ward_ca_certificates_renewed_total", Help: "SVIDs issued by renewal."}),
		revoked:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ward_ca_certificates_revoked_total", Help: "Certificates revoked."}),
		refused:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ward_ca_requests_refused_total", Help: "Enrollment and renewal requests refused, by reason."}, []string{"reason"}),
		expiring: prometheus.NewDesc("ward_ca_certificates_expiring_24h", "Unrevoked certificates that expire within 24 hours.", nil, nil),
		caExpiry: prometheus.NewDesc("ward_ca_expiry_seconds", "Seconds until a CA certificate in the trust bundle expires.", []string{"kind", "authority"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.issued.Describe(ch)
	m.renewed.Describe(ch)
	m.revoked.Describe(ch)
	m.refused.Describe(ch)
	ch <- m.expiring
	ch <- m.caExpiry
}

// Collect implements prometheus.Collector. The expiring count is read from
// the store at scrape time, bounded by a short timeout.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.issued.Collect(ch)
	m.renewed.Collect(ch)
	m.revoked.Collect(ch)
	m.refused.Collect(ch)
	now := m.ca.now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if n, err := m.ca.cfg.Store.CountExpiring(ctx, now, now.Add(24*time.Hour)); err == nil {
		ch <- prometheus.MustNewConstMetric(m.expiring, prometheus.GaugeValue, float64(n))
	} else {
		ch <- prometheus.NewInvalidMetric(m.expiring, err)
	}
	s := m.ca.st.Load()
	ch <- prometheus.MustNewConstMetric(m.caExpiry, prometheus.GaugeValue, s.root.cert.NotAfter.Sub(now).Seconds(), store.KindRoot, s.root.rec.ID)
	for _, sg := range s.trusted {
		ch <- prometheus.MustNewConstMetric(m.caExpiry, prometheus.GaugeValue, sg.cert.NotAfter.Sub(now).Seconds(), store.KindIntermediate, sg.rec.ID)
	}
}
