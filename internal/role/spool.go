package role

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardsec/ward/internal/atomicfile"
	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/control"
)

// spoolRetention is how long a proxy keeps its own copy of its audit
// records once the server has acknowledged them; the server's log is the
// one kept long. Records not acknowledged are never deleted.
const spoolRetention = 7 * 24 * time.Hour

// fileLogID, in the spool's directory, holds the log id: 128 random bits
// in hex, chosen when the spool is created. The server deduplicates what
// it receives per (SPIFFE ID, log id), so replicas of one service and a
// proxy restarted with a new data directory never collide.
const fileLogID = "log-id"

// Shipping: at most shipBatch records per POST, at least every
// shipInterval, and at most shipQueue records held in memory between two
// shipments (beyond that the shipper reads them back from the spool).
const (
	shipBatch    = 500
	shipInterval = time.Second
	shipQueue    = 64 << 10
)

// spool is a proxy's local audit log and what ships it to the server.
//
// Every event is appended durably to the local log first (a request is
// forwarded only once its decision is on disk there), then queued in
// memory for the server. The shipper sends the queue in batches and moves
// its cursor (a file) only when the server has acknowledged a batch.
// Records the queue does not hold (after a restart, or when it
// overflowed during a long outage) are read back from the log: the log is
// the truth, the queue only spares reading it again.
type spool struct {
	w       *audit.Writer
	dir     string
	logID   string
	cursor  string
	shipped atomic.Uint64 // the cursor: acknowledged by the server up to here
	client  *control.Client
	log     *slog.Logger
	metrics *audit.Metrics

	mu      sync.Mutex
	queue   []control.ShippedRecord
	dropped bool // the queue overflowed: read the log
	kick    chan struct{}
}

// openSpool opens a proxy's local audit log in dir, its cursor in cursor.
// syncInterval is --audit-sync-interval (0: audit.DefaultSyncInterval).
func openSpool(dir, cursor string, syncInterval time.Duration, client *control.Client, reg prometheus.Registerer, log *slog.Logger) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	logID, err := loadLogID(dir)
	if err != nil {
		return nil, err
	}
	m := audit.NewMetrics(reg)
	s := &spool{dir: dir, logID: logID, cursor: cursor, client: client, log: log, metrics: m, dropped: true, kick: make(chan struct{}, 1)}
	after, err := s.readCursor()
	if err != nil {
		return nil, err
	}
	s.shipped.Store(after)
	// Sealed segments stay uncompressed: the spool lives a week, and gzip
	// would cost CPU on the request path's machine for little. Retention
	// deletes only what the server acknowledged.
	s.w, err = audit.Open(dir, audit.Options{Retention: spoolRetention, Shipped: s.shipped.Load, NoCompress: true, SyncInterval: syncInterval, Logger: log, Metrics: m})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// loadLogID reads the spool's log id, choosing one when the spool is new.
func loadLogID(dir string) (string, error) {
	path := filepath.Join(dir, fileLogID)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(data))
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			return "", fmt.Errorf("audit spool: %s: %q is not a log id (32 hex digits)", path, id)
		}
		return id, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("audit spool: %w", err)
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b)
	if err := atomicfile.Write(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("audit spool: %w", err)
	}
	return id, nil
}

// readCursor returns the last seq of this spool's log the server
// acknowledged. The cursor file names the log it counts ("LOGID SEQ"): a
// cursor of another log (the spool directory was replaced) or of an
// earlier version (a bare number) counts nothing, and the spool ships
// what it holds again: at least once, never lost.
func (s *spool) readCursor() (uint64, error) {
	data, err := os.ReadFile(s.cursor)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data))
	if len(f) != 2 || f[0] != s.logID {
		s.log.Warn("audit cursor belongs to another log; shipping the spool from its start", "cursor", s.cursor, "log", s.logID)
		return 0, nil
	}
	after, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("audit cursor %s: %w", s.cursor, err)
	}
	return after, nil
}

// Emit implements audit.Sink: durably local, then queued for the server.
func (s *spool) Emit(ctx context.Context, e audit.Event) error {
	seq, err := s.w.Append(ctx, e)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if len(s.queue) < shipQueue {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		s.queue = append(s.queue, control.ShippedRecord{Seq: seq, Event: e})
	} else {
		s.dropped = true
	}
	full := len(s.queue) >= shipBatch
	s.mu.Unlock()
	if full {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Ready implements audit.Readier: the local log's state (fail closed).
func (s *spool) Ready() error { return s.w.Err() }

// Close closes the local log.
func (s *spool) Close() error { return s.w.Close() }

// Run ships until ctx ends, retrying with the same records until the
// server acknowledges them.
func (s *spool) Run(ctx context.Context) error {
	after := s.shipped.Load()
	t := time.NewTicker(shipInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.kick:
		}
		next, err := s.ship(ctx, after)
		var ae *control.APIError
		if errors.As(err, &ae) && ae.Code() == "audit_gap" && after > 0 {
			// The server is behind what it acknowledged (its store was
			// restored from a backup, say): ship the spool again from its
			// start; the server skips what it has.
			s.log.Error("the server lacks audit records it acknowledged; shipping the spool again from its start", "log", s.logID, "after", after, "err", err)
			s.mu.Lock()
			s.dropped = true
			s.mu.Unlock()
			after, next = 0, 0
			s.saveCursor(0)
		}
		if next > after {
			after = next
			s.saveCursor(after)
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("shipping audit records to the server failed; retrying", "after", after, "err", err)
		}
	}
}

// saveCursor records that the server acknowledged this log up to after,
// and lets retention delete up to there.
func (s *spool) saveCursor(after uint64) {
	if after < s.shipped.Load() {
		s.shipped.Store(after) // before the file: never delete what is unshipped
	}
	if err := atomicfile.Write(s.cursor, []byte(s.logID+" "+strconv.FormatUint(after, 10)+"\n"), 0o600); err != nil {
		s.log.Error("audit cursor not saved", "err", err)
		return
	}
	s.shipped.Store(after)
}

// ship sends what follows after and returns the new cursor.
func (s *spool) ship(ctx context.Context, after uint64) (uint64, error) {
	s.mu.Lock()
	recs, dropped := s.queue, s.dropped
	s.queue, s.dropped = nil, false
	s.mu.Unlock()
	// Concurrent appends may queue out of order. Skip what the server
	// already has; a gap before the queue (a restart, an overflow, an
	// append still being queued) is filled from the log.
	slices.SortFunc(recs, func(a, b control.ShippedRecord) int { return cmp.Compare(a.Seq, b.Seq) })
	i := 0
	for i < len(recs) && recs[i].Seq <= after {
		i++
	}
	recs = recs[i:]
	if dropped || (len(recs) > 0 && recs[0].Seq != after+1) {
		var err error
		if after, err = s.fromLog(ctx, after); err != nil {
			s.requeue(recs)
			return after, err
		}
		i = 0
		for i < len(recs) && recs[i].Seq <= after {
			i++
		}
		recs = recs[i:]
	}
	for len(recs) > 0 {
		n := min(len(recs), shipBatch)
		acked, err := s.client.ShipAudit(ctx, s.logID, recs[:n])
		if err == nil && acked < recs[0].Seq {
			err = errors.New("the server acknowledged none of the records sent")
		}
		if err != nil {
			s.requeue(recs)
			return after, err
		}
		after = acked
		now := time.Now()
		for len(recs) > 0 && recs[0].Seq <= acked {
			s.metrics.Shipped(recs[0].Event.Time, now)
			recs = recs[1:]
		}
	}
	return after, nil
}

// fromLog ships the log's records after after, reading them back.
func (s *spool) fromLog(ctx context.Context, after uint64) (uint64, error) {
	var batch []control.ShippedRecord
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		b := control.AuditBatch{LogID: s.logID, Records: batch}
		if after == 0 && batch[0].Seq > 1 {
			// Nothing acknowledged, yet the log starts later: a spool of
			// an earlier version whose shipped records retention deleted.
			b.From = batch[0].Seq
		}
		acked, err := s.client.ShipAuditBatch(ctx, b)
		if err != nil {
			return err
		}
		if acked < batch[len(batch)-1].Seq {
			return errors.New("the server acknowledged part of a batch")
		}
		after, batch = acked, batch[:0]
		return nil
	}
	_, err := audit.Query(ctx, s.dir, audit.Filter{AfterSeq: after}, func(r audit.Record) error {
		batch = append(batch, control.ShippedRecord{Seq: r.Seq, Event: r.Event})
		if len(batch) >= shipBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return after, err
}

// requeue puts records back at the front of the queue after a failure.
func (s *spool) requeue(recs []control.ShippedRecord) {
	if len(recs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(recs)+len(s.queue) > shipQueue {
		s.dropped = true // the log has them all
		s.queue = nil
		return
	}
	s.queue = append(append([]control.ShippedRecord(nil), recs...), s.queue...)
}

// proxyAudit opens a proxy's spool in dir and returns it with the sink the
// proxy records into: the spool, and each event logged as text.
//
// With failOpen the proxy serves requests it could not record (logging and
// counting each lost record): a risk, chosen per role with
// --audit-fail-open, for services whose availability matters more than a
// complete trail.
func proxyAudit(dir, cursor string, syncInterval time.Duration, client *control.Client, reg prometheus.Registerer, failOpen bool, log *slog.Logger) (*spool, audit.Sink, error) {
	sp, err := openSpool(dir, cursor, syncInterval, client, reg, log)
	if err != nil {
		return nil, nil, err
	}
	var sink audit.Sink = sp
	if failOpen {
		log.Warn("audit fail-open: requests that cannot be recorded are served anyway (--audit-fail-open)")
		sink = audit.FailOpen{Sink: sp, Log: log, Metrics: sp.metrics}
	}
	return sp, audit.Multi{sink, audit.SlogSink{Log: log}}, nil
}

// auditPaths are the default spool and cursor of a proxy's data directory.
func auditPaths(dataDir, auditDir string) (dir, cursor string) {
	if auditDir == "" {
		auditDir = filepath.Join(dataDir, "audit")
	}
	return auditDir, filepath.Join(dataDir, "audit-shipped.cursor")
}
