package role

import (
	"context"
	"log/slog"
	"time"

	"github.com/wardsec/ward/internal/control"
	"github.com/wardsec/ward/internal/flows"
)

// Shipping flows: a proxy's table is flushed every DefaultFlowInterval
// (Workload.FlowInterval), shipped in chunks of flowChunk records, and
// what the server did not take is kept for the next try, up to
// flowPending records (older ones are dropped first, and counted in the
// log: flows are statistics, the audit spool is the record that is never
// lost).
const (
	DefaultFlowInterval = 10 * time.Second
	flowChunk           = 5000
	flowPending         = 100000
)

// flowShipper sends a proxy's flow table to the server.
type flowShipper struct {
	table    *flows.Table
	client   *control.Client
	interval time.Duration
	log      *slog.Logger
	pending  []flows.Record
}

func newFlowShipper(client *control.Client, interval time.Duration, log *slog.Logger) *flowShipper {
	if interval <= 0 {
		interval = DefaultFlowInterval
	}
	return &flowShipper{table: flows.NewTable(), client: client, interval: interval, log: log}
}

// Run flushes and ships every interval until ctx ends, then ships the
// last interval once more, for at most five seconds.
func (f *flowShipper) Run(ctx context.Context) error {
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			f.ship(last)
			cancel()
			return nil
		case <-t.C:
			f.ship(ctx)
		}
	}
}

func (f *flowShipper) ship(ctx context.Context) {
	f.pending = append(f.pending, f.table.Flush(time.Now())...)
	if n := len(f.pending) - flowPending; n > 0 {
		f.log.Warn("flow records dropped: the server has not taken them", "dropped", n)
		f.pending = append(f.pending[:0], f.pending[n:]...)
	}
	for len(f.pending) > 0 {
		n := min(len(f.pending), flowChunk)
		if err := f.client.ShipFlows(ctx, f.pending[:n]); err != nil {
			if ctx.Err() == nil {
				f.log.Warn("shipping flow records failed; retrying at the next interval", "pending", len(f.pending), "err", err)
			}
			return
		}
		f.pending = f.pending[n:]
	}
	f.pending = nil
}
