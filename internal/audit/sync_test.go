package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// syscallFS counts the writes and fsyncs of segment files.
type syscallFS struct{ writes, syncs atomic.Int64 }

func (c *syscallFS) open(path string) (segmentFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &syscallFile{File: f, c: c}, nil
}

type syscallFile struct {
	*os.File
	c *syscallFS
}

func (f *syscallFile) Write(b []byte) (int, error) { f.c.writes.Add(1); return f.File.Write(b) }
func (f *syscallFile) Sync() error                 { f.c.syncs.Add(1); return f.File.Sync() }

// activeSegmentBytes reads the active segment as a reader (or a process
// started after a crash) sees it.
func activeSegmentBytes(t *testing.T, w *Writer) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(w.Dir(), segName(w.activeSeg.Load())))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// poll waits up to d for cond.
func poll(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIntervalAppendIsWrittenBeforeItReturns: with a sync interval,
// Append puts the record into the file before it returns (so a crash of
// the process cannot take it) without waiting for an fsync, and the
// writer's own goroutine fsyncs it within the interval.
func TestIntervalAppendIsWrittenBeforeItReturns(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	fs := &syscallFS{}
	w, err := Open(dir, Options{Signer: key, SyncInterval: 50 * time.Millisecond, CheckpointEvery: 1 << 20, openFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 20 {
		syncs := fs.syncs.Load()
		seq, err := w.Append(ctx, testEvent(i))
		if err != nil || seq != uint64(i+1) {
			t.Fatalf("append %d: %d %v", i, seq, err)
		}
		if !bytes.Contains(activeSegmentBytes(t, w), []byte(`"request_id":"req-`+strconv.Itoa(i)+`"`)) {
			t.Fatalf("record %d is not in the file when Append returns", seq)
		}
		if n := fs.syncs.Load(); n > syncs+1 {
			t.Fatalf("append %d: %d fsyncs while appending one record", i, n-syncs)
		}
	}
	if n := fs.syncs.Load(); n >= 20 {
		t.Fatalf("%d fsyncs for 20 appends: Append waits for fsync", n)
	}
	synced := fs.syncs.Load()
	if _, err := w.Append(ctx, testEvent(20)); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "the background fsync did not run", func() bool { return fs.syncs.Load() > synced })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, key); !r.OK() || r.Records != 21 {
		t.Fatalf("%s %v", r.Summary(), r.Problems)
	}
}

// TestSyncAlwaysFsyncsBeforeReturn: SyncAlways keeps group commit; a lone
// Append returns only after its own fsync.
func TestSyncAlwaysFsyncsBeforeReturn(t *testing.T) {
	dir := t.TempDir()
	fs := &syscallFS{}
	w, err := Open(dir, Options{SyncInterval: SyncAlways, openFile: fs.open})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 10 {
		syncs := fs.syncs.Load()
		if _, err := w.Append(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
		if fs.syncs.Load() <= syncs {
			t.Fatalf("append %d returned before an fsync", i)
		}
	}
}

// TestIntervalRotationAndCheckpoints: records written without waiting
// for fsync still rotate, checkpoint and verify as one chain, and the
// index of each segment covers them.
func TestIntervalRotationAndCheckpoints(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	w, err := Open(dir, Options{Signer: key, MaxSegmentBytes: 16 << 10, CheckpointEvery: 7, NoCompress: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				if _, err := w.Append(context.Background(), testEvent(g*100+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustVerify(t, dir, key)
	if !r.OK() || r.Records != 400 || r.Segments < 3 || r.Checkpoints < 400/7 {
		t.Fatalf("%s %v", r.Summary(), r.Problems)
	}
	n := 0
	if _, err := Query(context.Background(), dir, Filter{Principal: "spiffe://example.org/svc/caller-3"}, func(Record) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 80 {
		t.Fatalf("query found %d records of caller-3, want 80", n)
	}
}

// TestIntervalDiskFull: a full disk (ENOSPC part way through a write)
// fails the Append at once, raises Err, leaves nothing half written in
// the chain, and the writer continues once there is space.
func TestIntervalDiskFull(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	ff := &faultFS{}
	w, err := Open(dir, Options{Signer: key, NoCompress: true, Retention: -1, openFile: ff.open})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 10 {
		if _, err := w.Append(ctx, testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	ff.full.Store(true)
	start := time.Now()
	_, err = w.Append(ctx, testEvent(10))
	if !errors.Is(err, syscall.ENOSPC) || time.Since(start) > 2*time.Second {
		t.Fatalf("append on a full disk: %v after %v, want ENOSPC at once", err, time.Since(start))
	}
	if w.Err() == nil {
		t.Fatal("Err is nil while the disk is full")
	}
	if r := mustVerify(t, dir, key); r.Tampered() || r.TornTail != nil || r.LastSeq != 10 {
		t.Fatalf("chain damaged by the failed write: %s %v torn=%v", r.Summary(), r.Problems, r.TornTail)
	}
	ff.full.Store(false)
	if seq, err := w.Append(ctx, testEvent(11)); err != nil || seq != 11 {
		t.Fatalf("append after space was freed: %d %v", seq, err)
	}
	if err := w.Err(); err != nil {
		t.Fatalf("Err still reports %v after a good write", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, key); !r.OK() || r.LastSeq != 11 || r.Records != 11 {
		t.Fatalf("%s %v", r.Summary(), r.Problems)
	}
}

// TestReadOnlyDisk: on a file system gone read-only (EROFS) Append fails
// at once and Err reports it, in both modes; the chain keeps every record
// acknowledged before, and writing resumes once the disk is writable
// again (a write that wrote nothing needs no cutting back).
func TestReadOnlyDisk(t *testing.T) {
	for _, interval := range []time.Duration{SyncAlways, time.Second} {
		t.Run(modeName(interval), func(t *testing.T) {
			key := newKey(t)
			dir := t.TempDir()
			ff := &faultFS{}
			w, err := Open(dir, Options{Signer: key, NoCompress: true, Retention: -1, SyncInterval: interval, openFile: ff.open})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for i := range 5 {
				if _, err := w.Append(ctx, testEvent(i)); err != nil {
					t.Fatal(err)
				}
			}
			ff.readOnly.Store(true)
			for i := range 3 {
				start := time.Now()
				if _, err := w.Append(ctx, testEvent(5+i)); !errors.Is(err, syscall.EROFS) || time.Since(start) > 2*time.Second {
					t.Fatalf("append on a read-only disk: %v after %v, want EROFS at once", err, time.Since(start))
				}
				if err := w.Err(); !errors.Is(err, syscall.EROFS) {
					t.Fatalf("Err = %v on a read-only disk", err)
				}
			}
			if r := mustVerify(t, dir, key); r.Tampered() || r.TornTail != nil || r.LastSeq != 5 {
				t.Fatalf("chain after read-only: %s %v torn=%v", r.Summary(), r.Problems, r.TornTail)
			}
			ff.readOnly.Store(false)
			if seq, err := w.Append(ctx, testEvent(9)); err != nil || seq != 6 {
				t.Fatalf("append once writable: %d %v", seq, err)
			}
			if err := w.Err(); err != nil {
				t.Fatalf("Err = %v once writable", err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if r := mustVerify(t, dir, key); !r.OK() || r.Records != 6 {
				t.Fatalf("%s %v", r.Summary(), r.Problems)
			}
		})
	}
}

// TestIntervalFsyncFailureStopsWriter: a failed background fsync leaves
// the page cache state unknown: the writer refuses every later append and
// Err reports it, until the log is reopened (and recovery checks it).
func TestIntervalFsyncFailureStopsWriter(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	ff := &faultFS{}
	w, err := Open(dir, Options{Signer: key, NoCompress: true, Retention: -1, SyncInterval: 20 * time.Millisecond, openFile: ff.open})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ff.syncFails.Store(true)
	if _, err := w.Append(ctx, testEvent(0)); err != nil {
		t.Fatalf("append before the fsync: %v", err)
	}
	poll(t, 5*time.Second, "Err did not report the failed fsync", func() bool { return errors.Is(w.Err(), syscall.EIO) })
	ff.syncFails.Store(false)
	if _, err := w.Append(ctx, testEvent(1)); err == nil || !strings.Contains(err.Error(), "earlier failure") {
		t.Fatalf("append after a failed fsync: %v, want refusal", err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close hides the fsync failure")
	}
	w, err = Open(dir, Options{Signer: key, NoCompress: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := w.Append(ctx, testEvent(2)); err != nil || seq != 2 {
		t.Fatalf("append after reopening: %d %v", seq, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, key); !r.OK() || r.Records != 2 {
		t.Fatalf("%s %v", r.Summary(), r.Problems)
	}
}

// TestStalledWriteHonoursDeadline: when a write blocks (a stalled disk),
// the appends waiting behind it get an error by their deadline instead of
// hanging, in both modes, and Err reports the stall; once the disk moves
// Err clears and the chain is whole.
func TestStalledWriteHonoursDeadline(t *testing.T) {
	for _, interval := range []time.Duration{SyncAlways, time.Second} {
		t.Run(modeName(interval), func(t *testing.T) {
			dir := t.TempDir()
			ff := &faultFS{}
			w, err := Open(dir, Options{NoCompress: true, Retention: -1, SyncInterval: interval, openFile: ff.open})
			if err != nil {
				t.Fatal(err)
			}
			release := make(chan struct{})
			ff.writeBlock.Store(&release)
			// The first append is the one stuck in the disk's write.
			stuck := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				_, err := w.Append(ctx, testEvent(0))
				stuck <- err
			}()
			poll(t, 5*time.Second, "the first write did not start", func() bool { return ff.writing.Load() == 1 })
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					const deadline = 200 * time.Millisecond
					ctx, cancel := context.WithTimeout(context.Background(), deadline)
					defer cancel()
					start := time.Now()
					_, err := w.Append(ctx, testEvent(1+i))
					if d := time.Since(start); d > deadline+time.Second {
						t.Errorf("append waited %v behind a stalled write, deadline %v", d, deadline)
					}
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("append behind a stalled write: %v, want deadline exceeded", err)
					}
				})
			}
			wg.Wait()
			if interval != SyncAlways {
				// A caller with no deadline of its own (a proxy's request
				// context) gives up after StallAfter, not when the disk
				// moves.
				start := time.Now()
				_, err := w.Append(context.Background(), testEvent(9))
				if d := time.Since(start); !errors.Is(err, ErrStalled) || d > StallAfter+2*time.Second {
					t.Errorf("append without a deadline behind a stalled write: %v after %v, want ErrStalled after about %v", err, d, StallAfter)
				}
			}
			// Once the write has hung for StallAfter, Err says so: a proxy
			// refuses at once instead of waiting for each deadline.
			poll(t, StallAfter+5*time.Second, "Err does not report the stalled write", func() bool { return errors.Is(w.Err(), ErrStalled) })
			ff.writeBlock.Store(nil)
			close(release)
			<-stuck // whatever it says, it must return once the disk moves
			poll(t, 5*time.Second, "Err still reports a stall once the disk moved", func() bool { return w.Err() == nil })
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			// With SyncAlways the queued records are still written once the
			// disk moves (unacknowledged, which a record may be); without,
			// the appends that gave up never wrote.
			most := uint64(5)
			if interval != SyncAlways {
				most = 1
			}
			if r := mustVerify(t, dir, nil); !r.OK() || r.Records > most {
				t.Fatalf("%s %v, want at most %d records", r.Summary(), r.Problems, most)
			}
		})
	}
}

// BenchmarkAppend compares an Append that waits for its fsync with one
// that returns once the record is written, from several goroutines, and
// reports the write and fsync system calls per record.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name     string
		interval time.Duration
	}{{"interval=1s", time.Second}, {"always", SyncAlways}} {
		b.Run(bc.name, func(b *testing.B) {
			fs := &syscallFS{}
			w, err := Open(b.TempDir(), Options{SyncInterval: bc.interval, NoCompress: true, Retention: -1, openFile: fs.open})
			if err != nil {
				b.Fatal(err)
			}
			e := typedRequestEvent()
			w0, s0 := fs.writes.Load(), fs.syncs.Load()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := w.Append(context.Background(), e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(fs.writes.Load()-w0)/float64(b.N), "writes/op")
			b.ReportMetric(float64(fs.syncs.Load()-s0)/float64(b.N), "fsyncs/op")
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func modeName(interval time.Duration) string {
	if interval == SyncAlways {
		return "always"
	}
	return "interval"
}

// TestPowerLossTailRecovered: after a power loss, what the last sync
// interval wrote may be gone, cut short, or read back as zeros (the file
// grew but its data never reached the disk). Open cuts such a tail off
// as never synced and the chain continues from the last whole record.
func TestPowerLossTailRecovered(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(b []byte, cut int) []byte
	}{
		{"cut short", func(b []byte, cut int) []byte { return b[:cut+17] }},
		{"zeros", func(b []byte, cut int) []byte { return append(b[:cut], make([]byte, 8192)...) }},
		{"cut short then zeros", func(b []byte, cut int) []byte { return append(b[:cut+40], make([]byte, 4096)...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w, err := Open(dir, Options{NoCompress: true, Retention: -1, CheckpointEvery: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				if _, err := w.Append(context.Background(), testEvent(i)); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, segName(w.activeSeg.Load()))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Records 8, 9, 10 and the final checkpoint were never synced.
			cut := bytes.Index(b, []byte(`{"k":"rec","seq":8,`))
			if cut < 0 {
				t.Fatal("record 8 not found")
			}
			if err := os.WriteFile(path, tc.tail(bytes.Clone(b), cut), 0o600); err != nil {
				t.Fatal(err)
			}
			w, err = Open(dir, Options{NoCompress: true, Retention: -1})
			if err != nil {
				t.Fatalf("open after a power loss: %v", err)
			}
			if seq, err := w.Append(context.Background(), testEvent(10)); err != nil || seq != 8 {
				t.Fatalf("append after a power loss: %d %v, want seq 8", seq, err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if r := mustVerify(t, dir, nil); !r.OK() || r.Records != 8 {
				t.Fatalf("%s %v torn=%v", r.Summary(), r.Problems, r.TornTail)
			}
		})
	}
}
