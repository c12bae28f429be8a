package audit

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countingFS counts fsyncs of segment files.
type countingFS struct{ n atomic.Int64 }

func (c *countingFS) open(path string) (segmentFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &countingFile{File: f, c: c}, nil
}

func (c *countingFS) syncs() int64 { return c.n.Load() }

type countingFile struct {
	*os.File
	c *countingFS
}

func (f *countingFile) Sync() error { f.c.n.Add(1); return f.File.Sync() }

// faultFS injects disk failures: a full disk (writes stop half way with
// ENOSPC), a failing fsync, or an fsync that blocks until released.
type faultFS struct {
	full       atomic.Bool
	readOnly   atomic.Bool // writes and truncates fail with EROFS, writing nothing
	syncFails  atomic.Bool
	block      atomic.Pointer[chan struct{}] // blocks fsync
	writeBlock atomic.Pointer[chan struct{}] // blocks write
	writing    atomic.Int32                  // writes in progress
}

func (ff *faultFS) open(path string) (segmentFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fs: ff}, nil
}

type faultFile struct {
	*os.File
	fs *faultFS
}

func (f *faultFile) Write(b []byte) (int, error) {
	f.fs.writing.Add(1)
	defer f.fs.writing.Add(-1)
	if ch := f.fs.writeBlock.Load(); ch != nil {
		<-*ch
	}
	if f.fs.readOnly.Load() {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.EROFS}
	}
	if f.fs.full.Load() {
		n, _ := f.File.Write(b[:len(b)/2]) // the disk fills up part way
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Write(b)
}

func (f *faultFile) Truncate(size int64) error {
	if f.fs.readOnly.Load() {
		return &os.PathError{Op: "truncate", Path: f.Name(), Err: syscall.EROFS}
	}
	return f.File.Truncate(size)
}

func (f *faultFile) Sync() error {
	if ch := f.fs.block.Load(); ch != nil {
		<-*ch
	}
	if f.fs.syncFails.Load() {
		return &os.PathError{Op: "fsync", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Sync()
}

// TestDiskFull: when the disk fills up, Append fails (the caller fails
// closed), Err raises the fail-closed signal, the half-written batch is
// cut back so the chain stays whole, and appends resume once there is
// space again.
func TestDiskFull(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	ff := &faultFS{}
	w, err := Open(dir, Options{Signer: key, NoCompress: true, Retention: -1, openFile: ff.open})
	if err != nil {
		t.Fatal(err)
	}
	sink := LogSink{W: w}
	ctx := context.Background()
	for i := range 10 {
		if err := sink.Emit(ctx, testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	ff.full.Store(true)
	err = sink.Emit(ctx, testEvent(10))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v, want ENOSPC", err)
	}
	if sink.Ready() == nil {
		t.Fatal("Ready is nil while the disk is full")
	}
	if r := mustVerify(t, dir, key); r.Tampered() || r.TornTail != nil || r.LastSeq != 10 {
		t.Fatalf("chain damaged by the failed write: %s %v torn=%v", r.Summary(), r.Problems, r.TornTail)
	}
	ff.full.Store(false)
	seq, err := w.Append(ctx, testEvent(11))
	if err != nil || seq != 11 {
		t.Fatalf("append after space was freed: %d %v", seq, err)
	}
	if sink.Ready() != nil {
		t.Fatalf("Ready still failing after a good write: %v", sink.Ready())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, key); !r.OK() || r.LastSeq != 11 || r.Records != 11 {
		t.Fatalf("%s %v", r.Summary(), r.Problems)
	}
}

// TestFsyncFailureIsSticky: after a failed fsync the page cache state is
// unknown, so the writer refuses every later append until reopened
// (SyncAlways: the fsync is Append's own).
func TestFsyncFailureIsSticky(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	ff := &faultFS{}
	w, err := Open(dir, Options{Signer: key, NoCompress: true, Retention: -1, SyncInterval: SyncAlways, openFile: ff.open})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := w.Append(ctx, testEvent(0)); err != nil {
		t.Fatal(err)
	}
	ff.syncFails.Store(true)
	if _, err := w.Append(ctx, testEvent(1)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append with failing fsync: %v", err)
	}
	ff.syncFails.Store(false)
	if _, err := w.Append(ctx, testEvent(2)); err == nil || !strings.Contains(err.Error(), "earlier failure") {
		t.Fatalf("append after fsync failure: %v, want refusal", err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close hides the fsync failure")
	}
	w, err = Open(dir, Options{Signer: key, NoCompress: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(ctx, testEvent(3)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, key); r.Tampered() {
		t.Fatalf("%v", r.Problems)
	}
}

// TestBlockedDiskHonoursDeadline: when the disk hangs (SyncAlways), Append
// returns at its context deadline (the proxy answers 503) instead of hanging the
// request, both while waiting for fsync and when the queue is full.
func TestBlockedDiskHonoursDeadline(t *testing.T) {
	dir := t.TempDir()
	ff := &faultFS{}
	w, err := Open(dir, Options{NoCompress: true, Retention: -1, QueueSize: 1, SyncInterval: SyncAlways, openFile: ff.open})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	ff.block.Store(&release)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range 3 { // one in fsync, one queued, one finds the queue full
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := LogSink{W: w}.Emit(ctx, testEvent(i))
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("append returned after %v", d)
			}
			errs <- err
		})
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	var full bool
	for err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("append on a blocked disk: %v, want deadline exceeded", err)
		}
		full = full || strings.Contains(err.Error(), "queue full")
	}
	if !full {
		t.Error("no append saw the queue full")
	}
	ff.block.Store(nil)
	close(release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, nil); r.Tampered() {
		t.Fatalf("%v", r.Problems)
	}
}

// TestFailOpen: the opt-out swallows the error (and the record is lost,
// which is why it is a documented risk).
func TestFailOpen(t *testing.T) {
	dir := t.TempDir()
	ff := &faultFS{}
	w, err := Open(dir, Options{NoCompress: true, Retention: -1, openFile: ff.open})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ff.full.Store(true)
	if err := (LogSink{W: w}).Emit(context.Background(), testEvent(0)); err == nil {
		t.Fatal("fail-closed sink hid the error")
	}
	if err := (FailOpen{Sink: LogSink{W: w}}).Emit(context.Background(), testEvent(0)); err != nil {
		t.Fatalf("fail-open sink returned %v", err)
	}
	ff.full.Store(false)
}

const envFsizeDir = "WARD_AUDIT_TEST_FSIZE_DIR"

// fsizeHelper runs in a child process whose file size limit
// (RLIMIT_FSIZE) makes the disk "full" at 64 KiB: it appends until
// Append fails and prints what happened.
func fsizeHelper() {
	dir := os.Getenv(envFsizeDir)
	lim := syscall.Rlimit{Cur: 64 << 10, Max: 64 << 10}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		println("setrlimit:", err.Error())
		os.Exit(2)
	}
	w, err := Open(dir, Options{NoCompress: true, Retention: -1})
	if err != nil {
		println("open:", err.Error())
		os.Exit(2)
	}
	for i := range 100000 {
		seq, err := w.Append(context.Background(), testEvent(i))
		if err != nil {
			os.Stdout.WriteString("error " + err.Error() + "\n")
			break
		}
		os.Stdout.WriteString("acked " + strconv.FormatUint(seq, 10) + "\n")
	}
	w.Close()
	os.Exit(0)
}

// TestDiskFullRlimit fills a real file system limit (RLIMIT_FSIZE in a
// child process, so the kernel refuses the write with EFBIG) and checks
// the log stays whole and keeps every acknowledged record.
func TestDiskFullRlimit(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envFsizeDir+"="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "error ") || !strings.Contains(last, "file too large") {
		t.Fatalf("helper did not hit the size limit: %q", last)
	}
	acked := len(lines) - 1
	if acked < 50 {
		t.Fatalf("only %d records before the limit", acked)
	}
	r := mustVerify(t, dir, nil)
	if r.Tampered() || r.TornTail != nil || r.LastSeq != uint64(acked) {
		t.Fatalf("after a full disk: %s %v torn=%v, want %d records", r.Summary(), r.Problems, r.TornTail, acked)
	}
	w, err := Open(dir, Options{NoCompress: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := w.Append(context.Background(), testEvent(0)); err != nil || seq != uint64(acked+1) {
		t.Fatalf("append once space is back: %d %v", seq, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustVerify(t, dir, nil); !r.OK() {
		t.Fatalf("%v", r.Problems)
	}
}
