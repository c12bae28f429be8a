// Package audit carries Ward's security events: every issuance, renewal,
// revocation, token creation and refusal (and, later, every request
// decision) flows through one Sink interface so that the audit trail can
// persist it. No secret, key or token ever goes into an Event.
package audit

import (
	"context"
	"log/slog"
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
}

// Sink records events. Emit must not block for long and must be safe for
// concurrent use. It returns an error when the event could not be recorded.
type Sink interface {
	Emit(ctx context.Context, e Event) error
}

// SlogSink writes events as structured log lines.
type SlogSink struct{ Log *slog.Logger }

// Emit implements Sink.
func (s SlogSink) Emit(ctx context.Context, e Event) error {
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
	for k, v := range e.Fields {
		attrs = append(attrs, slog.String(k, v))
	}
	s.Log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
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
