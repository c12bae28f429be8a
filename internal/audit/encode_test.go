package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// FuzzAppendEvent holds the hand-written encoder byte-for-byte equal to
// encoding/json, which the stored format and the query prefilter rely on.
func FuzzAppendEvent(f *testing.F) {
	f.Add("gateway.request", "spiffe://example.org/svc/a", "<script>&\"\\\n\t\b\f\x00\x7f", "k", "\u2028\u2029\xff\xfeé", int64(1767225600123456789))
	f.Add("", "", "", "", "", int64(0))
	f.Fuzz(func(t *testing.T, typ, actor, reason, key, val string, nanos int64) {
		e := Event{Time: time.Unix(0, nanos), Type: typ, Actor: actor, Reason: reason, User: val, Service: key, RequestID: reason + actor}
		if key != "" || val != "" {
			e.Fields = map[string]string{key: val, val + "x": key}
		}
		if nanos%2 == 0 {
			e.HTTP = HTTP{Message: reason, Path: key, BytesOut: nanos, DryRun: nanos%4 == 0}
		}
		want, werr := json.Marshal(toWire(e))
		got, gerr := appendEvent(nil, &e)
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("errors differ: json %v, appendEvent %v", werr, gerr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("appendEvent\n%s\njson.Marshal\n%s", got, want)
		}
	})
}

// TestTypedRequestFieldsEncodeAsTheMapForm holds the typed request members
// to the stored bytes of the same members given as a Fields map, so that
// query, export, verify and shipping read them unchanged.
func TestTypedRequestFieldsEncodeAsTheMapForm(t *testing.T) {
	at := time.Date(2026, 12, 4, 8, 30, 0, 123456789, time.UTC)
	base := Event{Time: at, Type: "gateway.request", Actor: "user:alice", Subject: "spiffe://example.org/gateway/edge",
		Decision: "allow", Reason: "allowed", Source: "127.0.0.1:5555", Service: "orders", RequestID: "r-1", Result: "200"}
	for _, tc := range []struct {
		name   string
		typed  HTTP
		extra  map[string]string // Fields alongside the typed members
		fields map[string]string // the same event in the map form
	}{
		{"none", HTTP{}, nil, nil},
		{"gateway", HTTP{Route: "orders", Method: "GET", Host: "api.example.com", Path: "/orders/1%2F2", Proto: "HTTP/2.0",
			Status: 200, BytesIn: 17, BytesOut: 1234, LatencyUS: 845, AnonymousID: "anon-1", KeyPrefix: "wk_ab12",
			UserIssuer: "corp", Message: "<ok> & \"fine\"\n"}, nil,
			map[string]string{"route": "orders", "method": "GET", "host": "api.example.com", "path": "/orders/1%2F2", "proto": "HTTP/2.0",
				"status": "200", "bytes_in": "17", "bytes_out": "1234", "latency_us": "845", "anonymous_id": "anon-1", "key_prefix": "wk_ab12",
				"user_issuer": "corp", "message": "<ok> & \"fine\"\n"}},
		{"sidecar", HTTP{Method: "POST", Path: "/orders", Policy: "orders-callers", Message: "allowed by rule 1", RequestID: "r-1", DryRun: true},
			nil, map[string]string{"method": "POST", "path": "/orders", "policy": "orders-callers", "message": "allowed by rule 1",
				"request_id": "r-1", "dry_run": "true"}},
		{"refused", HTTP{Status: 400, Message: "bad chunking", Proto: "HTTP/1.1", LatencyUS: -3}, nil,
			map[string]string{"status": "400", "message": "bad chunking", "proto": "HTTP/1.1", "latency_us": "-3"}},
		{"waf", HTTP{Status: 403, WAF: "blocked", WAFRules: "942100,942190", WAFScore: 10, WAFLocation: "ARGS:id"}, nil,
			map[string]string{"status": "403", "waf": "blocked", "waf_rules": "942100,942190", "waf_score": "10", "waf_location": "ARGS:id"}},
		{"handshake", HTTP{Error: "tls: bad certificate", Peer: "spiffe://example.org/svc/x"}, nil,
			map[string]string{"error": "tls: bad certificate", "peer": "spiffe://example.org/svc/x"}},
		{"merged", HTTP{Method: "GET", Status: 503, Route: "r\u2028"},
			map[string]string{"a": "1", "method": "hidden by the member", "reported_by": "x", "zz": "é\u2029", "status2": "s"},
			map[string]string{"a": "1", "method": "GET", "reported_by": "x", "route": "r\u2028", "status": "503", "status2": "s", "zz": "é\u2029"}},
		{"only fields", HTTP{}, map[string]string{"kind": "edge", "serial": "01"}, map[string]string{"kind": "edge", "serial": "01"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typed, mapped := base, base
			typed.HTTP, typed.Fields = tc.typed, tc.extra
			mapped.Fields = tc.fields
			got, err := appendEvent(nil, &typed)
			if err != nil {
				t.Fatal(err)
			}
			want, err := appendEvent(nil, &mapped)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("typed form\n%s\nmap form\n%s", got, want)
			}
			viaJSON, err := json.Marshal(toWire(typed))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, viaJSON) {
				t.Fatalf("typed form\n%s\njson.Marshal\n%s", got, viaJSON)
			}
			back, err := decodeEvent(got)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.fields {
				if back.Fields[k] != v || typed.Field(k) != v {
					t.Errorf("field %s: decoded %q, Field %q, want %q", k, back.Fields[k], typed.Field(k), v)
				}
			}
		})
	}
}

func typedRequestEvent() Event {
	return Event{Time: time.Date(2026, 12, 4, 8, 30, 0, 123456789, time.UTC), Type: "gateway.request", Actor: "user:alice",
		Subject: "spiffe://example.org/gateway/edge", Decision: "allow", Reason: "allowed", Source: "127.0.0.1:5555",
		Service: "orders", User: "alice", App: "shop", RequestID: "0123456789abcdef", Result: "200",
		HTTP: HTTP{Route: "orders", Method: "GET", Host: "api.example.com", Path: "/orders/1", Proto: "HTTP/1.1",
			Status: 200, BytesIn: 0, BytesOut: 1234, LatencyUS: 845, KeyPrefix: "wk_ab12", UserIssuer: "corp"}}
}

// TestTypedRequestEventEncodesWithoutAllocating: recording a request
// costs no allocation in the encoder once its buffer is reused.
func TestTypedRequestEventEncodesWithoutAllocating(t *testing.T) {
	e := typedRequestEvent()
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() {
		buf, _ = appendEvent(buf[:0], &e)
	}); n != 0 {
		t.Fatalf("encoding a typed request event allocates %v times, want 0", n)
	}
}

func BenchmarkAppendEventTyped(b *testing.B) {
	e := typedRequestEvent()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = appendEvent(buf[:0], &e)
	}
}

// TestSlogSinkLogsRequestsAtDebug (issue 13): at the default level a
// proxied request costs no text line; control-plane events still log.
func TestSlogSinkLogsRequestsAtDebug(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		typ   string
		lines int
	}{
		{slog.LevelInfo, "gateway.request", 0},
		{slog.LevelInfo, "gateway.response", 0},
		{slog.LevelInfo, "sidecar.request", 0},
		{slog.LevelInfo, "ca.issue", 1},
		{slog.LevelDebug, "sidecar.request", 1},
	} {
		var buf bytes.Buffer
		sink := SlogSink{Log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))}
		if err := sink.Emit(context.Background(), Event{Type: tc.typ, HTTP: HTTP{Status: 200}}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(buf.String(), "\n"); got != tc.lines {
			t.Errorf("%s at %v: %d lines, want %d: %q", tc.typ, tc.level, got, tc.lines, buf.String())
		}
		if tc.lines == 1 && tc.typ == "sidecar.request" && !strings.Contains(buf.String(), "status=200") {
			t.Errorf("the debug line lacks the typed fields: %q", buf.String())
		}
	}
}
