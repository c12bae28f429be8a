package audit

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is a settable clock for retention and rotation.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSealedSegmentsCompressedAndVerifiable: sealed segments are gzipped
// and indexed in the background, and Verify and Query read the .gz files.
func TestSealedSegmentsCompressedAndVerifiable(t *testing.T) {
	key := newKey(t)
	dir := smallLog(t, key, 150, true)
	w, err := Open(dir, Options{Signer: key, MaxSegmentBytes: 4096, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "compression", func() bool {
		segs, _ := listSegments(dir)
		for _, s := range segs[:len(segs)-1] {
			if _, ok := readIndex(dir, s.Num); !s.Gz || !ok {
				return false
			}
		}
		return true
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	plain, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(plain) != 1 {
		t.Fatalf("plain segments left: %v", plain)
	}
	r := mustVerify(t, dir, key)
	if !r.OK() || r.Records != 150 {
		t.Fatalf("%s %v", r.Summary(), r.Problems)
	}
	n := 0
	if _, err := Query(context.Background(), dir, Filter{}, func(Record) error { n++; return nil }); err != nil || n != 150 {
		t.Fatalf("query over compressed segments: %d records, %v", n, err)
	}
}

// TestRetentionDeletesOldSegmentsVerifiably: segments older than the
// retention period go, a signed checkpoint records the cut, the rest
// still verifies; removing one more segment by hand is caught.
func TestRetentionDeletesOldSegmentsVerifiably(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	clock := &fakeClock{t: t0}
	opts := Options{Signer: key, MaxSegmentBytes: 4096, Retention: 30 * 24 * time.Hour, Now: clock.Now}
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 100 { // old records
		e := testEvent(i)
		e.Time = clock.Now()
		if _, err := w.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(31 * 24 * time.Hour)
	for i := range 100 { // new records; the rotations they cause run retention
		e := testEvent(100 + i)
		e.Time = clock.Now()
		if _, err := w.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "retention", func() bool {
		_, err := os.Stat(filepath.Join(dir, segName(1)+".gz"))
		return os.IsNotExist(err)
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustVerify(t, dir, key)
	if !r.OK() || r.Cut == nil {
		t.Fatalf("after retention: %s %v", r.Summary(), r.Problems)
	}
	if r.FirstSeq <= 1 || r.LastSeq != 200 {
		t.Fatalf("nothing was deleted or too much: %s", r.Summary())
	}
	t.Logf("after retention: %s", r.Summary())
	segs, _ := listSegments(dir)
	if segs[0].Num != r.Cut.Seg {
		t.Fatalf("log starts at segment %d, cut names %d", segs[0].Num, r.Cut.Seg)
	}
	// An intruder deleting the oldest remaining segment is not covered by
	// the cut. Its index may not be written yet: maintenance runs behind
	// the writer and stops with Close.
	if err := os.Remove(segs[0].Path); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, idxName(segs[0].Num))); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, key); !hasProblem(r, ProblemHeadMissing) {
		t.Fatalf("deleting past the retention cut not detected: %v", r.Problems)
	}
}

// TestQueryUsesIndexes: filters give the same answer as a full scan, and
// segments that cannot match are skipped.
func TestQueryUsesIndexes(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	w, err := Open(dir, Options{Signer: key, MaxSegmentBytes: 8192, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 600
	for i := range n {
		e := testEvent(i)
		if i == 421 {
			e.Actor, e.Service = "spiffe://example.org/svc/rare", "billing"
		}
		if _, err := w.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "indexes", func() bool {
		segs, _ := listSegments(dir)
		for _, s := range segs[:len(segs)-1] {
			if _, ok := readIndex(dir, s.Num); !ok {
				return false
			}
		}
		return true
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The writer indexes segments as it writes them; reading them back
	// gives the same index.
	segs, _ := listSegments(dir)
	for _, s := range segs[:len(segs)-1] {
		idx, _ := readIndex(dir, s.Num)
		var b indexBuilder
		if err := scanSegment(s, func(line []byte) error { b.line(line); return nil }); err != nil {
			t.Fatal(err)
		}
		re := b.finish(s.Num)
		if idx.First != re.First || idx.Last != re.Last || idx.Count != re.Count || !idx.Min.Equal(re.Min) || !idx.Max.Equal(re.Max) || !slices.Equal(idx.Bloom.Bits, re.Bloom.Bits) {
			t.Fatalf("segment %d: index %+v, read back %+v", s.Num, idx, re)
		}
	}
	var all []Record
	if _, err := Query(ctx, dir, Filter{}, func(r Record) error { all = append(all, r); return nil }); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		f          Filter
		wantPruned bool
	}{
		{"rare principal", Filter{Principal: "spiffe://example.org/svc/rare"}, true},
		{"principal as user", Filter{Principal: "user-3"}, false},
		{"service", Filter{Service: "billing"}, true},
		{"time range", Filter{Since: t0.Add(100 * time.Second), Until: t0.Add(130 * time.Second)}, true},
		{"decision and reason", Filter{Decision: "deny", Reason: "no_rule", Since: t0.Add(500 * time.Second)}, true},
		{"absent principal", Filter{Principal: "spiffe://example.org/svc/nobody"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want, got []uint64
			for _, r := range all {
				if tc.f.match(r.Event) {
					want = append(want, r.Seq)
				}
			}
			st, err := Query(ctx, dir, tc.f, func(r Record) error { got = append(got, r.Seq); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got %d records %v, want %d %v", len(got), got, len(want), want)
			}
			if tc.wantPruned && st.Skipped == 0 {
				t.Fatalf("no segment skipped: %+v", st)
			}
		})
	}
}

// TestRetentionNeverDeletesUnshipped (issue 12 item 11): a proxy's spool
// keeps records past its retention period while they are not shipped, and
// says so (a log line and ward_audit_unshipped_past_retention_records);
// once they are shipped, retention deletes them as usual.
func TestRetentionNeverDeletesUnshipped(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: t0}
	var shipped atomic.Uint64
	var logs lockedBuffer
	reg := prometheus.NewRegistry()
	opts := Options{MaxSegmentBytes: 4096, NoCompress: true, Retention: 7 * 24 * time.Hour, Now: clock.Now,
		Shipped: shipped.Load, Metrics: NewMetrics(reg), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	appendAt := func(from, n int) {
		t.Helper()
		for i := range n {
			e := testEvent(from + i)
			e.Time = clock.Now()
			if _, err := w.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendAt(0, 100) // old records, never shipped
	clock.Add(8 * 24 * time.Hour)
	appendAt(100, 100) // the rotations these cause run retention
	unshipped := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "ward_audit_unshipped_past_retention_records" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no ward_audit_unshipped_past_retention_records metric")
		return 0
	}
	first := func() uint64 {
		segs, _ := listSegments(dir)
		if len(segs) == 0 {
			return 0
		}
		return segs[0].Num
	}
	waitFor(t, "retention to run", func() bool { return unshipped() > 0 || first() != 1 })
	if first() != 1 {
		t.Fatalf("retention deleted unshipped records: the log starts at segment %d", first())
	}
	if !strings.Contains(logs.String(), "not shipped") {
		t.Errorf("no log line says unshipped records are kept past retention:\n%s", logs.String())
	}
	// Shipped now: the next maintenance deletes them.
	shipped.Store(200)
	appendAt(200, 100)
	waitFor(t, "retention of shipped records", func() bool { return first() != 1 && unshipped() == 0 })
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestPruneKeepsTheNewestListedSegment: when every segment listed is past
// retention (a rotation happened after the listing, so the active one is
// not among them), prune keeps the newest listed instead of indexing past
// the list. It panicked before (index out of range).
func TestPruneKeepsTheNewestListedSegment(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	clock := &fakeClock{t: t0}
	w, err := Open(dir, Options{Signer: key, MaxSegmentBytes: 4096, Retention: 30 * 24 * time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 100 {
		e := testEvent(i)
		e.Time = clock.Now()
		if _, err := w.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "indexes", func() bool {
		segs, _ := listSegments(dir)
		for _, s := range segs {
			if s.Num >= w.activeSeg.Load() {
				continue
			}
			if _, ok := readIndex(dir, s.Num); !ok {
				return false
			}
		}
		return len(segs) > 3
	})
	clock.Add(31 * 24 * time.Hour)
	segs, _ := listSegments(dir)
	var sealed []segFile
	for _, s := range segs {
		if s.Num < w.activeSeg.Load() {
			sealed = append(sealed, s)
		}
	}
	if err := w.prune(sealed, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Maintenance may prune further behind it, never past the active
	// segment; what is left verifies.
	left, _ := listSegments(dir)
	if len(left) == 0 || left[0].Num < sealed[len(sealed)-1].Num {
		t.Fatalf("after prune: %v, want the log to start at segment %d or later", left, sealed[len(sealed)-1].Num)
	}
	if r := mustVerify(t, dir, key); !r.OK() {
		t.Fatalf("%s %v", r.Summary(), r.Problems)
	}
}
