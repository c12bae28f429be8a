package cli

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
)

// spoolRetention is how long a proxy keeps its own copy of its audit
// records; the server's log is the one kept long.
const spoolRetention = 7 * 24 * time.Hour

// shipBatch is how many records one POST to the server carries.
const shipBatch = 500

// proxyAudit opens a proxy's local audit log in dir (its spool: a request
// is forwarded only once its decision is on disk there) and returns the
// sink the proxy records into, which also logs each event as text, and a
// shipper that sends the log to the server with acknowledgement and retry,
// remembering what was acknowledged in cursor.
func proxyAudit(dir, cursor string, client *control.Client, log *slog.Logger) (*audit.Writer, audit.Sink, *audit.Shipper, error) {
	w, err := audit.Open(dir, audit.Options{Retention: spoolRetention, Logger: log})
	if err != nil {
		return nil, nil, nil, err
	}
	var batch []control.ShippedRecord
	flush := func(ctx context.Context) error {
		for len(batch) > 0 {
			n := min(len(batch), shipBatch)
			acked, err := client.ShipAudit(ctx, batch[:n])
			if err != nil {
				return err
			}
			// Drop what the server has, also from an earlier attempt.
			i := 0
			for i < len(batch) && batch[i].Seq <= acked {
				i++
			}
			if i == 0 {
				return errShipStalled
			}
			batch = batch[i:]
		}
		return nil
	}
	var runCtx context.Context
	sh := &audit.Shipper{
		Dir: dir, Cursor: cursor, Log: log,
		Send: func(ctx context.Context, r audit.Record) error {
			runCtx = ctx
			batch = append(batch, control.ShippedRecord{Seq: r.Seq, Event: r.Event})
			if len(batch) >= shipBatch {
				return flush(ctx)
			}
			return nil
		},
		Flush: func() error {
			ctx := runCtx
			if ctx == nil {
				ctx = context.Background()
			}
			err := flush(ctx)
			if err != nil {
				batch = batch[:0] // the next pass starts again from the cursor
			}
			return err
		},
	}
	return w, audit.Multi{audit.LogSink{W: w}, audit.SlogSink{Log: log}}, sh, nil
}

// auditPaths are the default spool and cursor of a proxy's data directory.
func auditPaths(dataDir, auditDir string) (dir, cursor string) {
	if auditDir == "" {
		auditDir = filepath.Join(dataDir, "audit")
	}
	return auditDir, filepath.Join(dataDir, "audit-shipped.cursor")
}

var errShipStalled = shipError("the server acknowledged none of the records sent")

type shipError string

func (e shipError) Error() string { return string(e) }
