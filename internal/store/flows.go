package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wardsec/ward/internal/flows"
)

// FlowFilter selects flow records: those whose interval ends in (From, To]
// (a zero To: no upper bound), of one destination service when Dest is set.
type FlowFilter struct {
	From, To time.Time
	Dest     string
}

// Flows keeps the per-edge counters proxies ship (see package flows).
type Flows interface {
	// PutFlows records counters, all in one transaction.
	PutFlows(ctx context.Context, recs []flows.Record) error
	// ListFlows returns the records f selects, oldest first.
	ListFlows(ctx context.Context, f FlowFilter) ([]flows.Record, error)
	// DeleteFlowsBefore deletes the records whose interval ended before
	// t and returns how many it deleted.
	DeleteFlowsBefore(ctx context.Context, t time.Time) (int64, error)
}

// PutFlows implements Flows.
func (s *SQL) PutFlows(ctx context.Context, recs []flows.Record) (err error) {
	defer wrap(&err, "put flows")
	if len(recs) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, s.q(`INSERT INTO flows (start_at, end_at, reporter, source, dest, method, path, decision, reason, policy, class, count, latency_us, buckets)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range recs {
			if r.Count > 1<<62 || r.LatencyUS > 1<<62 {
				return fmt.Errorf("flow %s -> %s: count or latency out of range", r.Source, r.Dest)
			}
			if _, err := stmt.ExecContext(ctx, micros(r.Start), micros(r.End), r.Reporter, r.Source, r.Dest, r.Method, r.Path,
				r.Decision, r.Reason, r.Policy, r.Class, int64(r.Count), int64(r.LatencyUS), formatBuckets(r.Buckets)); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListFlows implements Flows.
func (s *SQL) ListFlows(ctx context.Context, f FlowFilter) (out []flows.Record, err error) {
	defer wrap(&err, "list flows")
	query := `SELECT start_at, end_at, reporter, source, dest, method, path, decision, reason, policy, class, count, latency_us, buckets
		FROM flows WHERE end_at > ?`
	args := []any{micros(f.From)}
	if !f.To.IsZero() {
		query += ` AND end_at <= ?`
		args = append(args, micros(f.To))
	}
	if f.Dest != "" {
		query += ` AND dest = ?`
		args = append(args, f.Dest)
	}
	rows, err := s.r.QueryContext(ctx, s.q(query+` ORDER BY end_at, start_at`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var r flows.Record
		var start, end, count, lat int64
		var buckets string
		if err := rows.Scan(&start, &end, &r.Reporter, &r.Source, &r.Dest, &r.Method, &r.Path, &r.Decision, &r.Reason, &r.Policy,
			&r.Class, &count, &lat, &buckets); err != nil {
			return nil, err
		}
		r.Start, r.End, r.Count, r.LatencyUS = fromMicros(start), fromMicros(end), uint64(count), uint64(lat)
		if r.Buckets, err = parseBuckets(buckets); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// DeleteFlowsBefore implements Flows.
func (s *SQL) DeleteFlowsBefore(ctx context.Context, t time.Time) (n int64, err error) {
	defer wrap(&err, "delete flows")
	return affected(s.w.ExecContext(ctx, s.q(`DELETE FROM flows WHERE end_at < ?`), micros(t)))
}

// formatBuckets writes a histogram as its counts, comma-separated.
func formatBuckets(b [flows.NumBuckets]uint64) string {
	var sb strings.Builder
	for i, n := range b {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatUint(n, 10))
	}
	return sb.String()
}

func parseBuckets(s string) (b [flows.NumBuckets]uint64, err error) {
	parts := strings.Split(s, ",")
	if len(parts) != flows.NumBuckets {
		return b, fmt.Errorf("stored histogram has %d buckets, want %d", len(parts), flows.NumBuckets)
	}
	for i, p := range parts {
		if b[i], err = strconv.ParseUint(p, 10, 64); err != nil {
			return b, fmt.Errorf("stored histogram: %w", err)
		}
	}
	return b, nil
}
