package audit

import (
	"context"
	"log/slog"
)

// LogSink records events in a Writer's durable log: Emit returns once the
// record is written (fsynced, with SyncAlways), and an error when it could
// not be (the caller fails closed: a proxy answers 503 and forwards
// nothing).
type LogSink struct{ W *Writer }

var (
	_ Sink    = LogSink{}
	_ Readier = LogSink{}
)

// Emit implements Sink.
func (s LogSink) Emit(ctx context.Context, e Event) error {
	_, err := s.W.Append(ctx, e)
	return err
}

// Ready is the fail-closed signal: nil while the log is writing, the last
// failure otherwise. A proxy checks it before forwarding a request, so
// that when the disk is failing nothing reaches the upstream.
func (s LogSink) Ready() error { return s.W.Err() }

// FailOpen wraps a sink so that a failure to record is logged and counted
// but does not fail the request. It is the explicit, per-role opt-out of
// failing closed, and a risk: while the sink fails, requests go
// unrecorded.
type FailOpen struct {
	Sink    Sink
	Log     *slog.Logger
	Metrics *Metrics
}

// Emit implements Sink; it never returns an error.
func (f FailOpen) Emit(ctx context.Context, e Event) error {
	if err := f.Sink.Emit(ctx, e); err != nil {
		f.Metrics.failed("fail_open", 1)
		if f.Log != nil {
			f.Log.LogAttrs(ctx, slog.LevelError, "audit record lost (fail-open)", slog.String("type", e.Type), slog.Any("err", err))
		}
	}
	return nil
}
