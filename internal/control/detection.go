package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/detect"
	"github.com/wardsec/ward/internal/resource"
)

// Detection runs on the server, on ingest: every record a gateway or
// sidecar ships passes through the detector once, right after it is
// appended to the audit log. The server sees the records of every proxy,
// so an attacker spreading requests over several gateways is counted as
// one; and the server is where bans are made and distributed. The price
// is the shipping delay: records reach the server within about a second,
// bans the proxies within another.

// EventDetection is the type of the record of a rule firing.
const EventDetection = "detect.alert"

// detection is the server's detector, configured from the current set.
type detection struct {
	once     sync.Once
	mu       sync.Mutex
	version  int64 // the set version the detector was configured from
	detector *detect.Detector
	fired    *prometheus.CounterVec
	active   prometheus.GaugeFunc
}

// detectionState returns the handler's detection state.
func (h *Handler) detectionState() *detection {
	h.detection.once.Do(func() {
		h.detection.detector = detect.New(0)
		h.detection.version = -1
		h.detection.fired = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ward_detections_total",
			Help: "Detection rules fired, by rule and by what was done (ban, alert, dry_run, allowed)."}, []string{"rule", "action"})
		h.detection.active = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ward_bans_active",
			Help: "Bans in force in the current resource set."}, func() float64 {
			cur, err := h.current(context.Background())
			if err != nil {
				return 0
			}
			return float64(detect.Compile(cur.objs).Active(time.Now()))
		})
	})
	return &h.detection
}

// DetectionMetrics are the detection's Prometheus collectors.
func (h *Handler) DetectionMetrics() []prometheus.Collector {
	d := h.detectionState()
	return []prometheus.Collector{d.fired, d.active}
}

// observe passes one ingested record through the detector and answers
// what fires: a detect.alert record with the evidence, and a ban when the
// rule asks for one.
func (h *Handler) observe(ctx context.Context, e *audit.Event) {
	d := h.detectionState()
	cur, err := h.current(ctx)
	if err != nil {
		return
	}
	d.mu.Lock()
	if d.version != cur.version {
		d.detector.Configure(detect.WithDefaults(cur.objs))
		d.version = cur.version
	}
	d.mu.Unlock()
	for _, det := range d.detector.Observe(e) {
		h.answer(ctx, &det)
	}
}

func (h *Handler) answer(ctx context.Context, det *detect.Detection) {
	action := det.Response
	switch {
	case det.Response == resource.ResponseBan && det.Allowed:
		action = "allowed"
	case det.Response == resource.ResponseBan && det.DryRun:
		action = "dry_run"
	}
	h.detectionState().fired.WithLabelValues(det.Rule, action).Inc()
	fields := map[string]string{
		"rule": det.Rule, "signal": det.Signal, "caller": det.Caller, "count": strconv.Itoa(det.Count),
		"window": det.Window.String(), "samples": strings.Join(det.Samples, " "), "response": det.Response, "action": action,
	}
	if det.Target != "" {
		fields["target"] = det.Target
	}
	if det.Signal == resource.SignalWAFHit && len(det.Details) > 0 {
		fields["waf_rules"] = strings.Join(det.Details, ",")
	}
	if det.Signal == resource.SignalVolume {
		fields["baseline"] = strconv.FormatFloat(det.Baseline, 'f', 1, 64)
	}
	if det.Ban() {
		name, err := h.autoBan(ctx, det)
		if err != nil {
			fields["ban_error"] = err.Error()
			h.Log.Error("detection: cannot ban", "rule", det.Rule, "caller", det.Caller, "err", err)
		} else {
			fields["ban"] = name
			fields["ban_ttl"] = det.BanTTL.String()
		}
	}
	h.emit(ctx, audit.Event{Type: EventDetection, Actor: h.serverID().String(), Subject: det.Caller, Decision: "deny",
		Reason: det.Rule, Source: det.Caller, Service: det.Target, Fields: fields})
}

// autoBan bans det's caller for the rule's TTL, as the server.
func (h *Handler) autoBan(ctx context.Context, det *detect.Detection) (string, error) {
	sum := sha256.Sum256([]byte(det.Caller))
	name := "auto-" + hex.EncodeToString(sum[:6])
	spec := &resource.BanSpec{Source: det.Caller, Expires: det.Time.Add(det.BanTTL).UTC().Format(time.RFC3339),
		Reason: fmt.Sprintf("%d %s in %v (samples: %s)", det.Count, det.Signal, det.Window, strings.Join(det.Samples, " ")),
		By:     resource.KindDetectionRule + "/" + det.Rule}
	if det.Time.Add(det.BanTTL).Before(time.Now()) {
		spec.Expires = time.Now().Add(det.BanTTL).UTC().Format(time.RFC3339)
	}
	obj := resource.Object{APIVersion: resource.APIVersion, Kind: resource.KindBan, Metadata: resource.Metadata{Name: name}, Spec: spec}
	_, err := h.apply(ctx, h.serverID(), change{action: "detect", system: true,
		next: func(cur *resourceSet) ([]resource.Object, error) {
			// A ban in force that lasts about as long already answers:
			// records still in flight from the banned caller fire the rule
			// again, and rewriting the ban for each would send every proxy
			// a new version many times a second. It is extended once a
			// minute at most.
			for _, o := range cur.objs {
				if b, ok := o.Spec.(*resource.BanSpec); ok && o.Kind == resource.KindBan && o.Metadata.Name == name &&
					b.Source == spec.Source && !b.ExpiresAt().Before(spec.ExpiresAt().Add(-time.Minute)) {
					return cur.objs, nil
				}
			}
			return resource.Merge(cur.objs, []resource.Object{obj}), nil
		}})
	return name, err
}
