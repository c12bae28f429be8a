package audit

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the audit trail's Prometheus metrics. A nil *Metrics records
// nothing, so every method is safe to call without one.
type Metrics struct {
	written  prometheus.Counter
	failures *prometheus.CounterVec
	lag      prometheus.Gauge
	shipped  prometheus.Counter
	fsync    prometheus.Histogram
	batch    prometheus.Histogram
	// unshipped counts records older than the retention period kept
	// because they are not shipped yet.
	unshipped prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "ward_audit_records_written_total",
			Help: "Audit records written to the local log (fsynced before the answer with SyncAlways, else within the sync interval)."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ward_audit_sink_failures_total",
			Help: "Audit records that could not be recorded, by cause (disk, timeout, closed, export)."}, []string{"cause"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ward_audit_shipping_lag_seconds",
			Help: "Age of the last audit record shipped to an exporter when it was shipped."}),
		shipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "ward_audit_records_shipped_total",
			Help: "Audit records delivered to an exporter (syslog, ECS)."}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ward_audit_fsync_seconds",
			Help: "Time to write and fsync one group-commit batch (SyncAlways), or of one background fsync.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ward_audit_batch_records",
			Help: "Records per group-commit batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		unshipped: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ward_audit_unshipped_past_retention_records",
			Help: "Records older than the retention period kept because they are not shipped yet (alert when above 0)."}),
	}
	if reg != nil {
		reg.MustRegister(m.written, m.failures, m.lag, m.shipped, m.fsync, m.batch, m.unshipped)
	}
	return m
}

func (m *Metrics) wrote(n int, d time.Duration) {
	if m == nil {
		return
	}
	m.written.Add(float64(n))
	m.batch.Observe(float64(n))
	m.fsync.Observe(d.Seconds())
}

// appended counts records written without waiting for their fsync.
func (m *Metrics) appended(n int) {
	if m == nil {
		return
	}
	m.written.Add(float64(n))
}

// synced observes a background fsync.
func (m *Metrics) synced(d time.Duration) {
	if m == nil {
		return
	}
	m.fsync.Observe(d.Seconds())
}

func (m *Metrics) failed(cause string, n int) {
	if m == nil {
		return
	}
	m.failures.WithLabelValues(cause).Add(float64(n))
}

func (m *Metrics) shippedRecord(t time.Time, now time.Time) {
	if m == nil {
		return
	}
	m.shipped.Inc()
	m.lag.Set(now.Sub(t).Seconds())
}

// Shipped counts a record of time t delivered at now, and sets the
// shipping lag from it.
func (m *Metrics) Shipped(t, now time.Time) { m.shippedRecord(t, now) }

func (m *Metrics) unshippedPastRetention(n int) {
	if m == nil {
		return
	}
	m.unshipped.Set(float64(n))
}
