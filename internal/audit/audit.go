// Package audit carries Ward's security events: every issuance, renewal,
// revocation, token creation and refusal (and, later, every request
// decision) flows through one Sink interface so that the audit trail can
// persist it. No secret, key or token ever goes into an Event.
package audit

import (
	"context"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event is one security-relevant fact.
type Event struct {
	Time     time.Time
	Type     string // e.g. "ca.issue", "ca.renew", "ca.revoke", "ca.token.create", "ca.refuse"
	Actor    string // who caused it: SPIFFE ID of the caller, or "" when unauthenticated
	Subject  string // what it is about: the SPIFFE ID, serial, ...
	Decision string // "allow" or "deny"
	Reason   string // reason code for a deny, machine-readable
	Source   string // remote address, when known
	Fields   map[string]string

	// Identities and correlation, filled in when known. Service is the
	// service the event concerns; User the person (token subject); App the
	// application (API key id); RequestID joins the gateway's record to the
	// sidecar's; TraceID is the W3C trace id; Result is what happened after
	// the decision (e.g. an HTTP status).
	Service   string
	User      string
	App       string
	RequestID string
	TraceID   string
	Result    string

	// HTTP holds a request record's members as values, so that recording
	// a request builds no map. They are stored inside "fields", merged
	// with Fields: the stored bytes are those of the same members put in
	// Fields as strings. An empty member (a zero number, false) is left
	// out; where a member and a Fields key share a name, the member wins.
	HTTP HTTP
}

// HTTP is what a proxy knows about one request it served or refused. The
// comment of each member names its key in the stored "fields".
type HTTP struct {
	Route       string // route: the gateway route that matched
	Method      string // method
	Host        string // host
	Path        string // path, escaped as on the wire
	Proto       string // proto, e.g. "HTTP/2.0"
	Status      int    // status: the HTTP status answered
	BytesIn     int64  // bytes_in: request body bytes
	BytesOut    int64  // bytes_out: response body bytes
	LatencyUS   int64  // latency_us: microseconds from arrival to the end of the answer
	AnonymousID string // anonymous_id
	KeyPrefix   string // key_prefix: the public prefix of the API key used
	UserIssuer  string // user_issuer: the issuer of the user's token
	Policy      string // policy: the AccessPolicy that decided
	Message     string // message: why, in words
	DryRun      bool   // dry_run: "true" when the policy only pretended to decide
	Peer        string // peer: the caller's verified SPIFFE ID, when it is not the Actor
	RequestID   string // request_id: as Event.RequestID, kept in fields as the sidecar stores it
	Error       string // error
	// The input inspection's findings (never the matched values).
	WAF         string // waf: blocked, would_block (dry-run), matched (under the threshold) or body_not_inspected
	WAFRules    string // waf_rules: the matched rule ids, comma-separated
	WAFScore    int64  // waf_score: the inbound anomaly score
	WAFLocation string // waf_location: where they matched (ARGS:q, REQUEST_HEADERS:User-Agent), comma-separated
}

// Field returns the stored value of key in e's "fields": the HTTP member
// of that name if it is set, else Fields[key].
func (e *Event) Field(key string) string {
	var v string
	e.HTTP.each(func(k, s string, n int64, num bool) bool {
		if k != key {
			return true
		}
		switch {
		case num:
			v = strconv.FormatInt(n, 10)
		default:
			v = s
		}
		return false
	})
	if v != "" {
		return v
	}
	return e.Fields[key]
}

// FieldMap returns e's "fields" as one map: Fields merged with the set
// HTTP members. It allocates; the log's encoder does not use it.
func (e *Event) FieldMap() map[string]string {
	if e.HTTP == (HTTP{}) {
		return e.Fields
	}
	m := make(map[string]string, len(e.Fields)+8)
	maps.Copy(m, e.Fields)
	e.HTTP.each(func(k, s string, n int64, num bool) bool {
		if num {
			m[k] = strconv.FormatInt(n, 10)
		} else {
			m[k] = s
		}
		return true
	})
	return m
}

// Sink records events. Emit must not block for long and must be safe for
// concurrent use. It returns an error when the event could not be recorded.
type Sink interface {
	Emit(ctx context.Context, e Event) error
}

// SlogSink writes events as structured log lines.
type SlogSink struct{ Log *slog.Logger }

// Emit implements Sink. Request records (types ending in ".request" or
// ".response": one per request) are logged at debug level, every other
// event at info: at the default level a request costs no text line.
func (s SlogSink) Emit(ctx context.Context, e Event) error {
	level := slog.LevelInfo
	if strings.HasSuffix(e.Type, ".request") || strings.HasSuffix(e.Type, ".response") {
		level = slog.LevelDebug
	}
	if !s.Log.Enabled(ctx, level) {
		return nil
	}
	attrs := []slog.Attr{
		slog.String("type", e.Type),
		slog.String("actor", e.Actor),
		slog.String("subject", e.Subject),
		slog.String("decision", e.Decision),
	}
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", e.Reason))
	}
	if e.Source != "" {
		attrs = append(attrs, slog.String("source", e.Source))
	}
	for k, v := range e.FieldMap() {
		attrs = append(attrs, slog.String(k, v))
	}
	s.Log.LogAttrs(ctx, level, "audit", attrs...)
	return nil
}

// Recorder keeps events in memory; tests use it to assert what was emitted.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

// Emit implements Sink.
func (r *Recorder) Emit(_ context.Context, e Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

// Events returns a copy of what was recorded.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Multi sends each event to every sink and returns the first error.
type Multi []Sink

// Emit implements Sink.
func (m Multi) Emit(ctx context.Context, e Event) error {
	var first error
	for _, s := range m {
		if err := s.Emit(ctx, e); err != nil && first == nil {
			first = err
		}
	}
	return first
}
