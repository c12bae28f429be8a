package audit

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
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
	// An intruder deleting the oldest remaining segment is not covered by the cut.
	for _, p := range []string{segs[0].Path, filepath.Join(dir, idxName(segs[0].Num))} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
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
