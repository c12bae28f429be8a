package control_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
)

// authFailures returns n gateway records of refused API keys from source.
func authFailures(gw, source string, first uint64, n int) []control.ShippedRecord {
	recs := make([]control.ShippedRecord, n)
	for i := range recs {
		recs[i] = control.ShippedRecord{Seq: first + uint64(i), Event: audit.Event{
			Time: time.Now(), Type: "gateway.request", Subject: "spiffe://example.org/gateway/" + gw, Decision: "deny", Reason: "apikey_unknown",
			Source: source + ":50000", RequestID: fmt.Sprintf("%s-%d", gw, first+uint64(i)), HTTP: audit.HTTP{Status: 401, Method: "GET", Path: "/orders/1"},
		}}
	}
	return recs
}

// TestDetectionBansAcrossGateways: auth failures from one address, split
// over two gateways, reach the default threshold (20 a minute) together:
// the server records a detect.alert with the evidence and bans the
// address for every proxy; an allow-listed address failing as often is
// reported and never banned. `ward get detectionrule` shows the defaults.
func TestDetectionBansAcrossGateways(t *testing.T) {
	events := &audit.Recorder{}
	ts := startServer(t, func(c *control.ServerConfig) { c.Events = events })
	ctx := t.Context()
	allow := "apiVersion: ward/v1\nkind: AllowList\nmetadata: {name: monitors}\nspec: {sources: [198.51.100.0/24]}\n"
	if _, err := ts.operator.Apply(ctx, files(teams, allow)); err != nil {
		t.Fatal(err)
	}
	a, b := ts.gatewayClient(t, "edge1"), ts.gatewayClient(t, "edge2")
	for i, c := range []*control.Client{a, b} {
		gw := fmt.Sprintf("edge%d", i+1)
		if _, err := c.ShipAudit(ctx, testLog, authFailures(gw, "203.0.113.50", 1, 10)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ShipAudit(ctx, otherLog, authFailures(gw, "198.51.100.9", 1, 10)); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := a.Snapshot(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(snap.Documents, "source: 203.0.113.50") || !strings.Contains(snap.Documents, "by: DetectionRule/auth-failures") {
		t.Fatalf("no ban of the attacker in the gateways' snapshot:\n%s", snap.Documents)
	}
	if strings.Contains(snap.Documents, "198.51.100.9") {
		t.Fatalf("an allow-listed source was banned:\n%s", snap.Documents)
	}
	alerts := findEvents(events, control.EventDetection)
	byCaller := map[string]audit.Event{}
	for _, e := range alerts {
		byCaller[e.Subject] = e
	}
	atk := byCaller["203.0.113.50"]
	if atk.Reason != "auth-failures" || atk.Fields["count"] != "20" || atk.Fields["action"] != "ban" || !strings.HasPrefix(atk.Fields["ban"], "auto-") ||
		!strings.Contains(atk.Fields["samples"], "edge1-1") {
		t.Fatalf("attacker's detection record: %+v", atk)
	}
	if mon := byCaller["198.51.100.9"]; mon.Fields["action"] != "allowed" || mon.Fields["ban"] != "" {
		t.Fatalf("allow-listed source's detection record: %+v", mon)
	}
	if adds := findEvents(events, "ban.add"); len(adds) != 1 || adds[0].Fields["by"] != "DetectionRule/auth-failures" {
		t.Fatalf("ban.add records: %+v", adds)
	}
	rules, err := ts.operator.Resources(ctx, "DetectionRule", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"auth-failures", "credential-cycling", "error-rate", "malformed-requests", "replay", "lateral-movement"} {
		if !strings.Contains(rules.Documents, "name: "+name) {
			t.Errorf("ward get detectionrule lacks the default %s:\n%s", name, rules.Documents)
		}
	}
	resp, err := http.Get("http://" + ts.PublicAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"ward_bans_active 1", `ward_detections_total{action="ban",rule="auth-failures"} 1`, `ward_detections_total{action="allowed",rule="auth-failures"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestEverySignalThroughIngest: records shipped by a gateway and a
// sidecar fire each default rule on the server, each with a detect.alert
// record carrying the evidence (rule, signal, caller, count, samples,
// action); only the rules whose response is ban ban.
func TestEverySignalThroughIngest(t *testing.T) {
	events := &audit.Recorder{}
	ts := startServer(t, func(c *control.ServerConfig) { c.Events = events })
	ctx := t.Context()
	if _, err := ts.operator.Apply(ctx, files(teams)); err != nil {
		t.Fatal(err)
	}
	gw, sc := ts.gatewayClient(t, "edge"), ts.svcClient(t, "orders")
	self := "spiffe://example.org/gateway/edge"
	var gwSeq, scSeq uint64
	ship := func(c *control.Client, seq *uint64, evs ...audit.Event) {
		t.Helper()
		recs := make([]control.ShippedRecord, len(evs))
		for i, e := range evs {
			*seq++
			e.Time = time.Now()
			recs[i] = control.ShippedRecord{Seq: *seq, Event: e}
		}
		if _, err := c.ShipAudit(ctx, testLog, recs); err != nil {
			t.Fatal(err)
		}
	}
	many := func(n int, f func(i int) audit.Event) []audit.Event {
		out := make([]audit.Event, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	req := func(src, reason string, status int, key string, i int) audit.Event {
		d := "allow"
		if reason != "" {
			d = "deny"
		}
		return audit.Event{Type: "gateway.request", Subject: self, Decision: d, Reason: reason, Source: src + ":1", RequestID: fmt.Sprintf("%s-%d", src, i),
			HTTP: audit.HTTP{Status: status, KeyPrefix: key, Method: "GET", Host: "api", Path: "/orders/1"}}
	}
	ship(gw, &gwSeq, many(20, func(i int) audit.Event { return req("203.0.113.1", "jwt_bad_signature", 401, "", i) })...)
	ship(gw, &gwSeq, many(5, func(i int) audit.Event {
		return req("203.0.113.2", "apikey_unknown", 401, fmt.Sprintf("aaaaaaa%d", i+2), i)
	})...)
	ship(gw, &gwSeq, many(200, func(i int) audit.Event { return req("203.0.113.3", "", 500, "", i) })...)
	ship(gw, &gwSeq, many(10, func(i int) audit.Event { return req("203.0.113.4", "malformed_request", 400, "", i) })...)
	ship(gw, &gwSeq, many(100, func(i int) audit.Event { return req("203.0.113.5", "", 200, "abcdefgh", i) })...)
	ship(gw, &gwSeq, many(5, func(i int) audit.Event {
		e := req("203.0.113.6", "waf", 403, "", i)
		e.HTTP.WAF, e.HTTP.WAFRules, e.HTTP.WAFScore, e.HTTP.WAFLocation = "blocked", fmt.Sprintf("942100,9421%02d", 90+i%2), 10, "ARGS:id"
		return e
	})...)
	// A new caller's first minute has no baseline: 300 requests (the
	// default minimum) from one API key are a volume spike.
	ship(gw, &gwSeq, many(300, func(i int) audit.Event {
		e := req("203.0.113.7", "", 200, "volumeaa", i)
		e.HTTP.Path = fmt.Sprintf("/orders/%d", i) // distinct requests: not a replay
		return e
	})...)
	ship(sc, &scSeq, audit.Event{Type: "sidecar.request", Subject: "spiffe://example.org/svc/orders", Actor: "spiffe://example.org/svc/catalog",
		Service: "orders", Decision: "deny", Reason: "no_rule_matches", Source: "127.0.0.1:9", RequestID: "lateral-1"})

	got := map[string]audit.Event{}
	for _, e := range findEvents(events, control.EventDetection) {
		got[e.Reason] = e
	}
	for rule, want := range map[string]struct{ caller, action string }{
		"auth-failures":      {"203.0.113.1", "ban"},
		"credential-cycling": {"203.0.113.2", "ban"},
		"error-rate":         {"203.0.113.3", "alert"},
		"malformed-requests": {"203.0.113.4", "ban"},
		"replay":             {"203.0.113.5", "alert"},
		"lateral-movement":   {"spiffe://example.org/svc/catalog", "alert"},
		"waf-hits":           {"203.0.113.6", "ban"},
		"volume-spike":       {"apikey:volumeaa", "alert"},
	} {
		e, ok := got[rule]
		if !ok {
			t.Errorf("%s did not fire", rule)
			continue
		}
		if e.Subject != want.caller || e.Fields["action"] != want.action || e.Fields["count"] == "" || e.Fields["samples"] == "" ||
			(want.action == "ban") != (e.Fields["ban"] != "") {
			t.Errorf("%s: %+v", rule, e)
		}
	}
	if w := got["waf-hits"].Fields; w["waf_rules"] != "942100,942190,942191" || w["count"] != "5" ||
		w["samples"] != "203.0.113.6-0 203.0.113.6-1 203.0.113.6-2 203.0.113.6-3 203.0.113.6-4" {
		t.Errorf("waf-hits evidence: %v", w)
	}
	if v := got["volume-spike"].Fields; v["count"] != "300" || v["baseline"] != "0.0" || v["samples"] == "" || v["ban"] != "" {
		t.Errorf("volume-spike evidence: %v", v)
	}
	cur, err := ts.operator.Resources(ctx, "Ban", "")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(cur.Documents, "kind: Ban"); n != 4 {
		t.Errorf("%d bans, want 4 (auth-failures, credential-cycling, malformed-requests, waf-hits):\n%s", n, cur.Documents)
	}
}

// TestDetectionBanNotRewritten: records still in flight from a caller
// already banned fire the rule again, but the ban in force is kept as
// it is: one ban.add, no new version per firing.
func TestDetectionBanNotRewritten(t *testing.T) {
	events := &audit.Recorder{}
	ts := startServer(t, func(c *control.ServerConfig) { c.Events = events })
	ctx := t.Context()
	if _, err := ts.operator.Apply(ctx, files(teams)); err != nil {
		t.Fatal(err)
	}
	gw := ts.gatewayClient(t, "edge")
	recs := make([]control.ShippedRecord, 15)
	for i := range recs {
		recs[i] = control.ShippedRecord{Seq: uint64(i + 1), Event: audit.Event{Type: "gateway.request", Subject: "spiffe://example.org/gateway/edge", Time: time.Now(), Decision: "deny",
			Reason: "apikey_unknown", Source: "203.0.113.40:1", RequestID: fmt.Sprintf("r%d", i),
			HTTP: audit.HTTP{Status: 401, KeyPrefix: fmt.Sprintf("bbbbbb%02d", i), Method: "GET", Host: "api", Path: "/orders/1"}}}
	}
	if _, err := gw.ShipAudit(ctx, testLog, recs); err != nil {
		t.Fatal(err)
	}
	fired := 0
	for _, e := range findEvents(events, control.EventDetection) {
		if e.Reason == "credential-cycling" && e.Fields["ban"] != "" {
			fired++
		}
	}
	if fired != 3 {
		t.Fatalf("credential-cycling fired %d times with a ban, want 3 (15 keys, 5 a firing)", fired)
	}
	if n, m := len(findEvents(events, "ban.add")), len(findEvents(events, "ban.change")); n != 1 || m != 0 {
		t.Fatalf("%d ban.add and %d ban.change, want 1 and 0", n, m)
	}
}
