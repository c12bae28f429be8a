package detect_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/detect"
	"github.com/wardsec/ward/internal/resource"
)

func gw(source, reason string, status int, key string, i int) *audit.Event {
	decision := "allow"
	if reason != "" {
		decision = "deny"
	}
	return &audit.Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Type: "gateway.request", Source: source + ":40000", Decision: decision, Reason: reason,
		RequestID: fmt.Sprintf("req-%d", i), HTTP: audit.HTTP{Status: status, KeyPrefix: key, Method: "GET", Host: "api", Path: "/orders/1"}}
}

func fire(t *testing.T, d *detect.Detector, evs []*audit.Event, rules ...string) []detect.Detection {
	t.Helper()
	var out []detect.Detection
	for _, e := range evs {
		for _, det := range d.Observe(e) {
			if len(rules) == 0 || slices.Contains(rules, det.Rule) {
				out = append(out, det)
			}
		}
	}
	return out
}

func defaultDetector(extra ...resource.Object) *detect.Detector {
	d := detect.New(0)
	d.Configure(detect.WithDefaults(extra))
	return d
}

// TestDefaultRulesFire: each signal fires its default rule at its
// threshold, once per window, with evidence (count, sample request ids).
func TestDefaultRulesFire(t *testing.T) {
	keys := "abcdefghijklmnopqrstuvwxyz"
	for _, tc := range []struct {
		rule  string
		n     int
		event func(i int) *audit.Event
		ban   bool
	}{
		{"auth-failures", 20, func(i int) *audit.Event { return gw("203.0.113.1", "apikey_unknown", 401, "", i) }, true},
		{"credential-cycling", 5, func(i int) *audit.Event {
			return gw("203.0.113.2", "apikey_unknown", 401, "key"+keys[i:i+1]+"aaaa", i)
		}, true},
		{"error-rate", 200, func(i int) *audit.Event { return gw("203.0.113.3", "", 500, "", i) }, false},
		{"malformed-requests", 10, func(i int) *audit.Event { return gw("203.0.113.4", "malformed_request", 400, "", i) }, true},
		{"replay", 100, func(i int) *audit.Event { return gw("203.0.113.5", "", 200, "abcdefgh", i) }, false},
		{"waf-hits", 5, func(i int) *audit.Event { return wafHit("203.0.113.6", "blocked", i) }, true},
		{"lateral-movement", 1, func(i int) *audit.Event {
			return &audit.Event{Time: t0, Type: "sidecar.request", Actor: "spiffe://example.org/svc/catalog", Service: "orders",
				Decision: "deny", Reason: "no_rule_matches", Source: "127.0.0.1:5000", RequestID: "lat-1"}
		}, false},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			d := defaultDetector()
			var evs []*audit.Event
			for i := range tc.n - 1 {
				evs = append(evs, tc.event(i))
			}
			if got := fire(t, d, evs, tc.rule); len(got) != 0 {
				t.Fatalf("fired below the threshold: %+v", got)
			}
			// One past the threshold: the count starts again after a firing,
			// so only a threshold of 1 fires twice.
			got := fire(t, d, []*audit.Event{tc.event(tc.n - 1), tc.event(tc.n)}, tc.rule)
			want := 1
			if tc.n == 1 {
				want = 2
			}
			if len(got) != want {
				t.Fatalf("detections at the threshold = %+v, want %d", got, want)
			}
			det := got[0]
			if det.Rule != tc.rule || det.Count < tc.n || len(det.Samples) == 0 || det.Ban() != tc.ban {
				t.Fatalf("detection %+v", det)
			}
		})
	}
}

func wafHit(source, outcome string, i int) *audit.Event {
	e := gw(source, "waf", 403, "", i)
	if outcome == "would_block" {
		e.Decision, e.Reason, e.HTTP.Status = "allow", "", 200
	}
	e.HTTP.WAF, e.HTTP.WAFScore, e.HTTP.WAFLocation = outcome, 10, "ARGS:id"
	e.HTTP.WAFRules = fmt.Sprintf("942100,9421%02d", i%3)
	return e
}

// TestWAFHits: the default waf-hits rule counts blocks, not dry-run
// would-blocks nor matches under the threshold, and carries the WAF rule
// ids seen; a rule with wouldBlock counts would-blocks too.
func TestWAFHits(t *testing.T) {
	if n := len(detect.Defaults()); n != detect.DefaultRuleCount {
		t.Fatalf("%d default rules, DefaultRuleCount says %d", n, detect.DefaultRuleCount)
	}
	d := defaultDetector()
	var evs []*audit.Event
	for i := range 20 {
		evs = append(evs, wafHit("203.0.113.20", "would_block", i), wafHit("203.0.113.20", "matched", i))
	}
	if got := fire(t, d, evs, "waf-hits"); len(got) != 0 {
		t.Fatalf("would-blocks and matches fired the default rule: %+v", got)
	}
	evs = evs[:0]
	for i := range 5 {
		evs = append(evs, wafHit("203.0.113.21", "blocked", 100+i))
	}
	got := fire(t, d, evs, "waf-hits")
	if len(got) != 1 {
		t.Fatalf("detections %+v, want 1", got)
	}
	det := got[0]
	if det.Caller != "203.0.113.21" || det.Count != 5 || !det.Ban() || det.BanTTL != 15*time.Minute ||
		!slices.Equal(det.Samples, []string{"req-100", "req-101", "req-102", "req-103", "req-104"}) ||
		!slices.Equal(det.Details, []string{"942100", "942101", "942102"}) {
		t.Fatalf("detection %+v", det)
	}

	objs, err := resource.Parse("rules.yaml", []byte(`apiVersion: ward/v1
kind: DetectionRule
metadata: {name: waf-hits}
spec: {signal: waf-hit, threshold: 3, wouldBlock: true, response: alert}
`))
	if err != nil {
		t.Fatal(err)
	}
	d = defaultDetector(objs...)
	got = fire(t, d, []*audit.Event{wafHit("203.0.113.22", "would_block", 0), wafHit("203.0.113.22", "matched", 1),
		wafHit("203.0.113.22", "blocked", 2), wafHit("203.0.113.22", "would_block", 3)}, "waf-hits")
	if len(got) != 1 || got[0].Count != 3 || got[0].Ban() {
		t.Fatalf("wouldBlock rule: %+v", got)
	}
}

// TestWAFWouldBlockOnlyForWAFHit: wouldBlock on another signal is refused.
func TestWAFWouldBlockOnlyForWAFHit(t *testing.T) {
	_, err := resource.Parse("rules.yaml", []byte(`apiVersion: ward/v1
kind: DetectionRule
metadata: {name: x}
spec: {signal: replay, threshold: 3, wouldBlock: true}
`))
	if err == nil || !strings.Contains(err.Error(), "rules.yaml:4") || !strings.Contains(err.Error(), "wouldBlock") {
		t.Fatalf("err = %v, want rules.yaml:4 ... wouldBlock", err)
	}
}

// volumeRun sends, from one API key, perMinute[m] requests spread over
// minute m, and returns the volume-spike detections.
func volumeRun(t *testing.T, d *detect.Detector, key string, perMinute ...int) []detect.Detection {
	t.Helper()
	var out []detect.Detection
	for m, n := range perMinute {
		for i := range n {
			e := gw("203.0.113.30", "", 200, key, i)
			e.Time = t0.Add(time.Duration(m)*time.Minute + time.Duration(i)*time.Minute/time.Duration(n))
			e.RequestID = fmt.Sprintf("m%d-%d", m, i)
			out = append(out, fire(t, d, []*audit.Event{e}, "volume-spike")...)
		}
	}
	return out
}

// TestVolumeSpike: a caller far above its own baseline fires the
// default volume-spike rule (an alert, once per window) with the
// baseline as evidence; a steady caller, even a busy one, and a quiet
// caller's first small burst do not fire.
func TestVolumeSpike(t *testing.T) {
	steady := make([]int, 30)
	for i := range steady {
		steady[i] = 1000 // busy but steady: above the minimum, never above 4 x its baseline after the first window
	}
	d := defaultDetector()
	// The first window has no baseline yet: a busy new caller fires once,
	// then never while steady.
	if got := volumeRun(t, d, "steadyaa", steady...); len(got) != 1 || got[0].Time.After(t0.Add(time.Minute)) {
		t.Fatalf("steady caller: %d detections %+v, want 1 in its first minute", len(got), got)
	}
	if got := volumeRun(t, defaultDetector(), "quietaaa", 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 200); len(got) != 0 {
		t.Fatalf("a quiet caller's burst under the minimum fired: %+v", got)
	}
	got := volumeRun(t, defaultDetector(), "spikeaaa", 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 1000, 1000)
	// Once per window: in the second minute of 1000 the baseline has
	// followed (0.3 x 1000 + 0.7 x 97 = 368, x 4 > 1000).
	if len(got) != 1 {
		t.Fatalf("spike: %d detections %+v, want 1", len(got), got)
	}
	det := got[0]
	if det.Rule != "volume-spike" || det.Caller != "apikey:spikeaaa" || det.Ban() || det.Response != resource.ResponseAlert ||
		det.Baseline < 90 || det.Baseline > 100 || det.Count != int(det.Baseline*4)+1 || det.Samples[0] != "m10-0" || len(det.Samples) != 5 {
		t.Fatalf("detection %+v", det)
	}
}

// TestVolumeRefusesBan: a volume rule only alerts.
func TestVolumeRefusesBan(t *testing.T) {
	for doc, want := range map[string]string{
		"{signal: volume, threshold: 3, response: ban, banTTL: 1m}": "volume can only alert",
		"{signal: volume, threshold: 3, tolerance: 1}":              "tolerance 1",
		"{signal: replay, threshold: 3, tolerance: 2}":              "volume signal only",
	} {
		_, err := resource.Parse("rules.yaml", []byte("apiVersion: ward/v1\nkind: DetectionRule\nmetadata: {name: x}\nspec: "+doc+"\n"))
		if err == nil || !strings.Contains(err.Error(), "rules.yaml:4") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want rules.yaml:4 ... %s", doc, err, want)
		}
	}
}

// TestLateralNewEdge: after one window of learning, a call on an edge
// never seen fires lateral-movement even when policy allows it.
func TestLateralNewEdge(t *testing.T) {
	d := defaultDetector()
	call := func(from, to string, at time.Time) []detect.Detection {
		return d.Observe(&audit.Event{Time: at, Type: "sidecar.request", Actor: "spiffe://example.org/svc/" + from, Service: to, Decision: "allow", RequestID: "r"})
	}
	if got := call("gateway-ish", "orders", time.Now()); len(got) != 0 {
		t.Fatalf("learning: %+v", got)
	}
	later := time.Now().Add(2 * time.Minute)
	if got := call("gateway-ish", "orders", later); len(got) != 0 {
		t.Fatalf("known edge fired: %+v", got)
	}
	if got := call("catalog", "orders", later); len(got) != 1 || got[0].Caller != "spiffe://example.org/svc/catalog" || got[0].Target != "orders" {
		t.Fatalf("new edge: %+v", got)
	}
}

// TestDryRunAndAllowList: a dry-run rule and an allow-listed source
// still record the detection but never ask for a ban.
func TestDryRunAndAllowList(t *testing.T) {
	objs, err := resource.Parse("rules.yaml", []byte(`apiVersion: ward/v1
kind: DetectionRule
metadata: {name: auth-failures}
spec: {signal: auth-failure, threshold: 3, mode: dry-run}
---
apiVersion: ward/v1
kind: DetectionRule
metadata: {name: strict}
spec: {signal: auth-failure, threshold: 3, reasons: [apikey_unknown]}
---
apiVersion: ward/v1
kind: AllowList
metadata: {name: monitors}
spec: {sources: [198.51.100.0/24]}
`))
	if err != nil {
		t.Fatal(err)
	}
	d := defaultDetector(objs...)
	var evs []*audit.Event
	for i := range 3 {
		evs = append(evs, gw("203.0.113.9", "apikey_unknown", 401, "", i), gw("198.51.100.7", "apikey_unknown", 401, "", i))
	}
	got := fire(t, d, evs)
	if len(got) != 4 {
		t.Fatalf("detections %+v, want 4 (two rules, two sources)", got)
	}
	for _, det := range got {
		wantBan := det.Rule == "strict" && det.Caller == "203.0.113.9"
		if det.Ban() != wantBan || det.DryRun != (det.Rule == "auth-failures") || det.Allowed != (det.Caller == "198.51.100.7") {
			t.Errorf("%+v: Ban() = %v, want %v", det, det.Ban(), wantBan)
		}
	}
	// The strict rule counts only its reasons.
	if got := fire(t, d, []*audit.Event{gw("203.0.113.10", "jwt_expired", 401, "", 0), gw("203.0.113.10", "jwt_expired", 401, "", 1), gw("203.0.113.10", "jwt_expired", 401, "", 2)}); len(got) != 1 || got[0].Rule != "auth-failures" {
		t.Fatalf("jwt failures: %+v", got)
	}
}

// TestWindowSlides: failures spread wider than the window never fire.
func TestWindowSlides(t *testing.T) {
	d := defaultDetector()
	for i := range 100 {
		e := gw("203.0.113.11", "apikey_unknown", 401, "", 0)
		e.Time = t0.Add(time.Duration(i) * 10 * time.Second) // 6 a minute, under 20
		if got := d.Observe(e); len(got) != 0 {
			t.Fatalf("fired at %d: %+v", i, got)
		}
	}
}

// TestSpray: 1,000,000 distinct source addresses each failing once, with
// a real attacker inside the spray: the tables stay within their
// capacity, the heap grows by less than the documented bound, and the
// attacker is still detected.
func TestSpray(t *testing.T) {
	const capacity = detect.DefaultCapacity
	d := detect.New(capacity)
	d.Configure(detect.Defaults())
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var caught []detect.Detection
	e := &audit.Event{Type: "gateway.request", Decision: "deny", Reason: "apikey_unknown", HTTP: audit.HTTP{Status: 401}}
	for i := range 1_000_000 {
		e.Time = t0.Add(time.Duration(i) * 50 * time.Microsecond) // a million in 50 s
		e.Source = fmt.Sprintf("10.%d.%d.%d:1", i>>16&0xff, i>>8&0xff, i&0xff)
		e.RequestID = ""
		e.HTTP.KeyPrefix = fmt.Sprintf("%08x", i)
		d.Observe(e)
		if i%40_000 == 0 { // the attacker: 25 failures among the spray
			a := *e
			a.Source, a.RequestID, a.HTTP.KeyPrefix = "203.0.113.66:1", fmt.Sprintf("atk-%d", i), fmt.Sprintf("atk%05d", i/40_000)
			caught = append(caught, d.Observe(&a)...)
		}
	}
	tracked, evicted := d.Tracked()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(d)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("tracked %d callers, evicted %d, heap grew %d MiB", tracked, evicted, grown>>20)
	if tracked > detect.DefaultRuleCount*capacity {
		t.Errorf("tracked %d callers, more than %d rules x %d", tracked, detect.DefaultRuleCount, capacity)
	}
	if grown > detect.MemoryBound {
		t.Errorf("heap grew %d bytes, more than the documented %d", grown, detect.MemoryBound)
	}
	rules := map[string]bool{}
	for _, c := range caught {
		if c.Caller == "203.0.113.66" {
			rules[c.Rule] = true
		}
	}
	if !rules["auth-failures"] || !rules["credential-cycling"] {
		t.Fatalf("the attacker in the spray was not detected by auth-failures and credential-cycling: %+v", caught)
	}
}

func TestRegistrationBurstAlertsPerService(t *testing.T) {
	d := detect.New(detect.DefaultCapacity)
	d.Configure(detect.Defaults())
	t0 := time.Now()
	register := func(service string, i int) []detect.Detection {
		return d.Observe(&audit.Event{Type: "instance.register", Time: t0.Add(time.Duration(i) * time.Millisecond),
			Actor: "spiffe://example.org/svc/" + service, Service: service, Source: "127.0.0.9:4000"})
	}
	for i := range 29 {
		if got := register("orders", i); len(got) != 0 {
			t.Fatalf("registration %d of orders fired %+v; the threshold is 30 in a minute", i+1, got)
		}
		if got := register("catalog", i); len(got) != 0 {
			t.Fatalf("catalog's registrations counted with orders': %+v", got)
		}
	}
	got := register("orders", 30)
	if len(got) != 1 || got[0].Rule != "registration-burst" || got[0].Caller != "orders" || got[0].Response != "alert" {
		t.Fatalf("the 30th registration of orders: %+v, want one registration-burst alert for orders", got)
	}
	// A request record never counts as a registration, nor the reverse.
	if got := d.Observe(&audit.Event{Type: "sidecar.request", Time: t0, Actor: "spiffe://example.org/svc/x", Service: "orders", Decision: "allow"}); len(got) != 0 {
		t.Errorf("a request fired %+v", got)
	}
}
