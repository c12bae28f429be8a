package audit

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Writer. The zero value is usable.
type Options struct {
	// Signer signs checkpoints (the server passes its ECDSA P-256 key).
	// Without one, checkpoints are written unsigned: the chain still
	// detects edits, but a rewrite of the whole log is not caught.
	Signer crypto.Signer
	// MaxSegmentBytes seals the active segment once it is this large
	// (default 16 MiB: a query reads whole segments, so smaller ones make
	// selective queries faster).
	MaxSegmentBytes int64
	// MaxSegmentAge seals the active segment once it is this old and holds
	// at least one record (default 1h).
	MaxSegmentAge time.Duration
	// CheckpointEvery and CheckpointInterval: a checkpoint is written after
	// this many records or this long since the last one, whichever comes
	// first, if records were written since (defaults 10,000 and 10s).
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// QueueSize bounds the appends waiting to be written with SyncAlways
	// (default 16,384). When it is full, Append waits until its context is
	// done.
	QueueSize int
	// Retention deletes sealed segments whose newest record is older than
	// this (default 400 days; negative keeps everything).
	Retention time.Duration
	// Shipped, when set, says up to which seq the log's records have been
	// delivered elsewhere (a proxy's spool: acknowledged by the server).
	// Retention never deletes a segment holding a record after it: such
	// records are kept past the retention period, logged and counted
	// (ward_audit_unshipped_past_retention_records) instead.
	Shipped func() uint64
	// SyncInterval is how long a record written by Append may wait for
	// its fsync (default DefaultSyncInterval). Append writes the record
	// into the file before it returns, so it survives a crash of the
	// process at once; a power loss may take what the last interval wrote.
	// SyncAlways instead returns only once the record is fsynced (group
	// commit): for events that must be on disk before the answer.
	SyncInterval time.Duration
	// NoCompress keeps sealed segments uncompressed.
	NoCompress bool
	Logger     *slog.Logger
	Metrics    *Metrics
	// Now is the clock (default time.Now).
	Now func() time.Time

	// openFile opens segment files for writing; tests inject faults here.
	openFile func(path string) (segmentFile, error)
}

// segmentFile is the part of *os.File the writer uses.
type segmentFile interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Close() error
}

func (o Options) withDefaults() Options {
	if o.MaxSegmentBytes <= 0 {
		o.MaxSegmentBytes = 16 << 20
	}
	if o.MaxSegmentAge <= 0 {
		o.MaxSegmentAge = time.Hour
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 10000
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 10 * time.Second
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	} else if o.SyncInterval < 0 {
		o.SyncInterval = SyncAlways
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 16384
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.openFile == nil {
		o.openFile = func(path string) (segmentFile, error) {
			return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		}
	}
	return o
}

// SyncAlways, as Options.SyncInterval, fsyncs every record before Append
// returns.
const SyncAlways time.Duration = -1

// DefaultSyncInterval bounds what a power loss can take from a log that
// does not sync always.
const DefaultSyncInterval = time.Second

// DefaultRetention is how long records are kept by default: intrusions are
// often found long after they start.
const DefaultRetention = 400 * 24 * time.Hour

// MaxEventBytes bounds one encoded event, so that every record stays
// within what Verify reads as one line.
const MaxEventBytes = maxLine - 1024

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: log is closed")

// ErrStalled is what Err reports while a write to the log (with
// SyncAlways: a write and its fsync) has not returned for StallAfter: the
// disk has stopped, and requests are refused at once rather than each
// waiting for its deadline.
var ErrStalled = errors.New("audit: the disk has not finished a write to the log for " + StallAfter.String())

// StallAfter is how long a write may take before Err reports ErrStalled.
const StallAfter = 2 * time.Second

// maxBatch bounds one group commit.
const maxBatch = 8192

// Writer appends events to a hash-chained log directory. With SyncAlways
// it commits in groups: concurrent appends share one write and one fsync,
// and each Append returns only once its record is on disk. Otherwise each
// Append writes its record into the active segment itself, without
// handing it to another goroutine, and a background goroutine fsyncs at
// most SyncInterval apart.
type Writer struct {
	dir  string
	opts Options
	log  *slog.Logger

	// sem is the lock on the segment file and the chain state: a 1-slot
	// channel, so that an Append can give up waiting at its deadline when
	// the disk stalls.
	sem chan struct{}
	// syncMu guards syncFile, the file the background fsync may sync;
	// closing a segment file takes it, so no fsync runs on a closed file.
	syncMu   sync.Mutex
	syncFile segmentFile
	dirty    atomic.Bool  // written since the last fsync
	writing  atomic.Int64 // when the write in progress started (Unix ns), 0 when none
	bufs     sync.Pool    // of *[]byte, to encode events into

	mu     sync.RWMutex // held for reading while sending to reqs; Close takes it to stop senders
	closed bool
	reqs   chan *request
	stop   chan struct{}
	done   chan struct{}
	kick   chan struct{}
	mdone  chan struct{}

	activeSeg atomic.Uint64
	isClosed  atomic.Bool           // closed, for Err without the lock
	lastErr   atomic.Pointer[error] // the last failure, nil once a batch succeeds

	// Guarded by sem.
	f         segmentFile
	segNum    uint64
	segSize   int64 // bytes known good (whole entries written) in the active segment
	segStart  time.Time
	segRecs   int
	seq       uint64
	last      Hash
	sinceCkpt int
	lastCkpt  time.Time
	failed    error // sticky: the file's state is unknown, reopen the log
	buf       []byte
	idx       indexBuilder // of the active segment

	built   chan segIndex       // indexes of sealed segments, loop -> maintain
	pending map[uint64]segIndex // owned by maintain
}

type request struct {
	ev  []byte
	cut *Cut // a retention checkpoint instead of a record
	res chan result

	// What the segment index needs, so that it is built as records are
	// written rather than by decoding them again.
	t                         time.Time
	actor, user, app, service string
}

type result struct {
	seq uint64
	err error
}

// Open opens (or creates) the log in dir and starts its writer. A torn
// tail left by a crash (a last record only partly written, so never
// acknowledged) is cut off and logged; any other damage makes Open fail:
// run Verify.
func Open(dir string, opts Options) (*Writer, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	w := &Writer{
		dir: dir, opts: opts, log: opts.Logger,
		reqs: make(chan *request, opts.QueueSize),
		stop: make(chan struct{}), done: make(chan struct{}),
		kick: make(chan struct{}, 1), mdone: make(chan struct{}),
		built: make(chan segIndex, 64), pending: map[uint64]segIndex{},
		sem: make(chan struct{}, 1),
	}
	w.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	if err := w.recover(); err != nil {
		if w.f != nil {
			w.f.Close()
		}
		return nil, fmt.Errorf("audit: open %s: %w", dir, err)
	}
	go w.loop()
	go w.maintain()
	return w, nil
}

// Dir returns the log directory.
func (w *Writer) Dir() string { return w.dir }

// Append records e and returns its sequence number once it is written:
// fsynced with SyncAlways, else in the file (the kernel's page cache),
// where a crash of the process cannot take it. It fails when the disk
// fails or ctx ends first; the caller must then treat the event as not
// recorded (fail closed). A zero e.Time is set to now.
func (w *Writer) Append(ctx context.Context, e Event) (uint64, error) {
	if e.Time.IsZero() {
		e.Time = w.opts.Now()
	}
	if w.opts.SyncInterval != SyncAlways {
		return w.appendBuffered(ctx, &e)
	}
	ev, err := appendEvent(make([]byte, 0, 512), &e)
	if err != nil {
		return 0, fmt.Errorf("audit: encode event: %w", err)
	}
	if len(ev) > MaxEventBytes {
		w.opts.Metrics.failed("too_large", 1)
		return 0, fmt.Errorf("audit: event of type %q is %d bytes encoded, more than %d", e.Type, len(ev), MaxEventBytes)
	}
	return w.submit(ctx, &request{ev: ev, res: make(chan result, 1),
		t: e.Time, actor: e.Actor, user: e.User, app: e.App, service: e.Service})
}

// appendBuffered encodes e and writes it from the caller's goroutine;
// the background fsync makes it durable.
func (w *Writer) appendBuffered(ctx context.Context, e *Event) (uint64, error) {
	bp := w.bufs.Get().(*[]byte)
	defer w.bufs.Put(bp)
	ev, err := appendEvent((*bp)[:0], e)
	*bp = ev[:0]
	if err != nil {
		return 0, fmt.Errorf("audit: encode event: %w", err)
	}
	if len(ev) > MaxEventBytes {
		w.opts.Metrics.failed("too_large", 1)
		return 0, fmt.Errorf("audit: event of type %q is %d bytes encoded, more than %d", e.Type, len(ev), MaxEventBytes)
	}
	if err := w.lock(ctx); err != nil {
		w.opts.Metrics.failed("timeout", 1)
		return 0, fmt.Errorf("audit: log busy: %w", err)
	}
	defer w.unlock()
	if w.isClosed.Load() {
		w.opts.Metrics.failed("closed", 1)
		return 0, ErrClosed
	}
	r := request{ev: ev, t: e.Time, actor: e.Actor, user: e.User, app: e.App, service: e.Service}
	batch, seqs := [1]*request{&r}, [1]uint64{}
	if err := w.write(batch[:], seqs[:], false); err != nil {
		return 0, err
	}
	return seqs[0], nil
}

// lock takes sem, or gives up when ctx ends or after StallAfter with
// ErrStalled: a caller whose context has no deadline (a proxy's request)
// never waits longer than that behind a write the disk does not finish.
// The timer exists only when sem is taken.
func (w *Writer) lock(ctx context.Context) error {
	select {
	case w.sem <- struct{}{}:
		return nil
	default:
	}
	stall := time.NewTimer(StallAfter)
	defer stall.Stop()
	select {
	case w.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stall.C:
		return ErrStalled
	}
}

func (w *Writer) unlock() { <-w.sem }

func (w *Writer) submit(ctx context.Context, r *request) (uint64, error) {
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		w.opts.Metrics.failed("closed", 1)
		return 0, ErrClosed
	}
	select {
	case w.reqs <- r:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		w.opts.Metrics.failed("timeout", 1)
		return 0, fmt.Errorf("audit: queue full: %w", ctx.Err())
	}
	select {
	case res := <-r.res:
		return res.seq, res.err
	case <-ctx.Done():
		w.opts.Metrics.failed("timeout", 1)
		return 0, fmt.Errorf("audit: record not acknowledged: %w", ctx.Err())
	}
}

// Err reports whether the writer can record: ErrClosed once it is
// closed, else the error of the last failed batch (for good after a
// failed fsync), ErrStalled while a write hangs, nil while batches
// succeed. Proxies use it to fail closed before forwarding anything.
func (w *Writer) Err() error {
	if w.isClosed.Load() {
		return ErrClosed
	}
	if p := w.lastErr.Load(); p != nil {
		return *p
	}
	if t := w.writing.Load(); t != 0 && time.Since(time.Unix(0, t)) >= StallAfter {
		return ErrStalled
	}
	return nil
}

// Close writes what is queued and a final checkpoint, and closes the log.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.isClosed.Store(true)
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	<-w.mdone
	return w.failed
}

func (w *Writer) loop() {
	defer close(w.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var syncC <-chan time.Time
	if w.opts.SyncInterval != SyncAlways {
		st := time.NewTicker(w.opts.SyncInterval)
		defer st.Stop()
		syncC = st.C
	}
	batch := make([]*request, 0, 64)
	for {
		select {
		case r := <-w.reqs:
			batch = append(batch[:0], r)
			batch = w.drain(batch)
			w.commit(batch)
		case <-syncC:
			w.syncWritten()
		case <-tick.C:
			_ = w.lock(context.Background())
			w.idle()
			w.unlock()
		case <-w.stop:
			for {
				batch = w.drain(batch[:0])
				if len(batch) == 0 {
					break
				}
				w.commit(batch)
			}
			_ = w.lock(context.Background())
			defer w.unlock()
			if w.failed == nil && w.sinceCkpt > 0 {
				w.commitLocked(nil) // final checkpoint
			}
			if w.failed == nil && w.dirty.Load() {
				if err := w.f.Sync(); err != nil {
					w.failed = fmt.Errorf("fsync: %w", err)
				}
			}
			if w.f != nil {
				if err := w.closeFile(); err != nil && w.failed == nil {
					w.failed = err
				}
			}
			return
		}
	}
}

// syncWritten fsyncs what Append wrote since the last fsync. It runs
// without sem, so that appends go on while the disk syncs; a failure
// stops the writer for good, as the page cache state is then unknown.
func (w *Writer) syncWritten() {
	if !w.dirty.Swap(false) {
		return
	}
	w.syncMu.Lock()
	t0 := time.Now()
	var err error
	if w.syncFile != nil {
		err = w.syncFile.Sync()
	}
	w.syncMu.Unlock()
	if err == nil {
		w.opts.Metrics.synced(time.Since(t0))
		return
	}
	_ = w.lock(context.Background())
	defer w.unlock()
	if w.failed == nil {
		w.failed = fmt.Errorf("fsync: %w", err)
	}
	w.fail("fsync", err)
}

// closeFile closes the active segment file; the caller holds sem.
func (w *Writer) closeFile() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	err := w.f.Close()
	w.f, w.syncFile = nil, nil
	return err
}

func (w *Writer) drain(batch []*request) []*request {
	for len(batch) < maxBatch {
		select {
		case r := <-w.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// idle runs on the ticker: time-based checkpoints and rotation. The
// caller holds sem.
func (w *Writer) idle() {
	if w.failed != nil {
		return
	}
	now := w.opts.Now()
	if w.segRecs > 0 && now.Sub(w.segStart) >= w.opts.MaxSegmentAge {
		if err := w.rotate(); err != nil {
			w.fail("rotate", err)
		}
		return
	}
	if w.sinceCkpt > 0 && now.Sub(w.lastCkpt) >= w.opts.CheckpointInterval {
		_, _ = w.commitLocked(nil)
	}
}

func (w *Writer) fail(what string, err error) {
	err = fmt.Errorf("audit: %s: %w", what, err)
	w.lastErr.Store(&err)
	w.log.Error("audit log write failed", "op", what, "err", err)
}

// commit writes batch (nil: only a checkpoint) with one write and one
// fsync and answers every request.
func (w *Writer) commit(batch []*request) {
	_ = w.lock(context.Background())
	seqs, err := w.commitLocked(batch)
	w.unlock()
	for i, r := range batch {
		if err != nil {
			r.res <- result{err: err}
		} else {
			r.res <- result{seq: seqs[i]}
		}
	}
}

func (w *Writer) commitLocked(batch []*request) ([]uint64, error) {
	seqs := make([]uint64, len(batch))
	return seqs, w.write(batch, seqs, true)
}

// write appends batch (nil: only a checkpoint) to the active segment with
// one write, fsyncs if durable, and sets seqs. The caller holds sem.
func (w *Writer) write(batch []*request, seqs []uint64, durable bool) error {
	if w.failed != nil {
		w.opts.Metrics.failed("disk", len(batch))
		return fmt.Errorf("audit: log unusable after an earlier failure: %w", w.failed)
	}
	now := w.opts.Now()
	if w.segRecs > 0 && (w.segSize >= w.opts.MaxSegmentBytes || now.Sub(w.segStart) >= w.opts.MaxSegmentAge) {
		if err := w.rotate(); err != nil {
			w.fail("rotate", err)
			w.opts.Metrics.failed("disk", len(batch))
			return fmt.Errorf("audit: rotate segment: %w", err)
		}
	}
	buf := w.buf[:0]
	seq, last := w.seq, w.last
	recs := 0
	var cut *Cut
	for i, r := range batch {
		if r.cut != nil {
			cut = r.cut
			seqs[i] = seq
			continue
		}
		seq++
		start := len(buf)
		buf = appendRecordBody(buf, seq, last, r.ev)
		buf, last = sealLine(buf, start, last)
		seqs[i] = seq
		recs++
	}
	ckpt := cut != nil || batch == nil ||
		(w.sinceCkpt+recs > 0 && (w.sinceCkpt+recs >= w.opts.CheckpointEvery || now.Sub(w.lastCkpt) >= w.opts.CheckpointInterval))
	if ckpt {
		var err error
		if buf, last, err = w.appendCheckpoint(buf, seq, last, false, cut, now); err != nil {
			w.buf = buf
			w.opts.Metrics.failed("sign", len(batch))
			return fmt.Errorf("audit: sign checkpoint: %w", err)
		}
	}
	t0 := time.Now()
	if err := w.writeOut(buf, durable); err != nil {
		w.buf = buf
		w.fail("write", err)
		w.opts.Metrics.failed("disk", len(batch))
		return fmt.Errorf("audit: record not written: %w", err)
	}
	w.buf = buf
	w.lastErr.Store(nil)
	for i, r := range batch {
		if r.cut == nil {
			w.idx.add(seqs[i], r.t, r.actor, r.user, r.app, r.service)
		}
	}
	w.seq, w.last = seq, last
	w.segRecs += recs
	if ckpt {
		w.sinceCkpt, w.lastCkpt = 0, now
	} else {
		w.sinceCkpt += recs
	}
	if durable {
		w.opts.Metrics.wrote(recs, time.Since(t0))
	} else {
		w.opts.Metrics.appended(recs)
	}
	return nil
}

func (w *Writer) appendCheckpoint(buf []byte, seq uint64, prev Hash, seal bool, cut *Cut, now time.Time) ([]byte, Hash, error) {
	e := &entry{Kind: kindCheckpoint, Seq: seq, Time: now.UTC(), Prev: prev, Seal: seal, Cut: cut}
	if w.opts.Signer != nil {
		sig, err := signCheckpoint(w.opts.Signer, e)
		if err != nil {
			return buf, prev, err
		}
		e.Sig = sig
	}
	return appendEntry(buf, e)
}

// writeDurable appends buf to the active segment and fsyncs.
func (w *Writer) writeDurable(buf []byte) error { return w.writeOut(buf, true) }

// writeOut appends buf to the active segment, and fsyncs if durable. On
// a write error it cuts the file back to the end of the last good write,
// so a later one continues a clean chain; if that fails too, or fsync
// fails (the page cache state is then unknown), the writer stops for
// good.
func (w *Writer) writeOut(buf []byte, durable bool) error {
	w.writing.Store(time.Now().UnixNano())
	defer w.writing.Store(0)
	if n, err := w.f.Write(buf); err != nil {
		if n == 0 {
			return err // nothing written, nothing to cut back
		}
		if terr := w.f.Truncate(w.segSize); terr != nil {
			w.failed = fmt.Errorf("write: %w; and cutting back the partial write: %w", err, terr)
		} else if serr := w.f.Sync(); serr != nil {
			w.failed = fmt.Errorf("write: %w; and fsync after cutting back: %w", err, serr)
		}
		return err
	}
	if !durable {
		w.dirty.Store(true)
	} else if err := w.f.Sync(); err != nil {
		w.failed = fmt.Errorf("fsync: %w", err)
		return err
	}
	w.segSize += int64(len(buf))
	return nil
}

// rotate seals the active segment with a signed checkpoint and starts the
// next one, whose header carries the chain on.
func (w *Writer) rotate() error {
	now := w.opts.Now()
	buf, last, err := w.appendCheckpoint(w.buf[:0], w.seq, w.last, true, nil, now)
	if err != nil {
		return err
	}
	if err := w.writeDurable(buf); err != nil {
		return err
	}
	w.last = last
	if err := w.closeFile(); err != nil {
		w.failed = err
		return err
	}
	sealed := w.segNum
	select {
	case w.built <- w.idx.finish(sealed):
	default: // maintenance is behind; it indexes the segment by reading it
	}
	if err := w.startSegment(sealed+1, now); err != nil {
		return err
	}
	w.log.Debug("audit segment sealed", "segment", sealed, "seq", w.seq)
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return nil
}

// startSegment creates segment num with its header.
func (w *Writer) startSegment(num uint64, now time.Time) error {
	path := filepath.Join(w.dir, segName(num))
	f, err := w.opts.openFile(path)
	if err != nil {
		w.failed = err
		return err
	}
	w.f, w.segNum, w.segSize, w.segStart, w.segRecs = f, num, 0, now, 0
	w.setSyncFile(f)
	w.sinceCkpt, w.lastCkpt = 0, now
	w.idx = indexBuilder{}
	w.activeSeg.Store(num)
	hdr := &entry{Kind: kindHeader, Version: formatVersion, Seg: num, Seq: w.seq, Time: now.UTC(), Prev: w.last}
	buf, h, err := appendEntry(w.buf[:0], hdr)
	if err != nil {
		return err
	}
	if err := w.writeDurable(buf); err != nil {
		w.failed = err
		return err
	}
	w.last = h
	if err := syncDir(w.dir); err != nil {
		w.failed = err
		return err
	}
	return nil
}

func (w *Writer) setSyncFile(f segmentFile) {
	w.syncMu.Lock()
	w.syncFile = f
	w.syncMu.Unlock()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// recover finds where the chain ends and opens the active segment.
func (w *Writer) recover() error {
	if err := w.cleanup(); err != nil {
		return err
	}
	segs, err := listSegments(w.dir)
	if err != nil {
		return err
	}
	now := w.opts.Now()
	for len(segs) > 0 {
		last := segs[len(segs)-1]
		var b indexBuilder
		st, err := scanTail(last, &b)
		if err != nil {
			return fmt.Errorf("%s: %w (run `ward audit verify`)", filepath.Base(last.Path), err)
		}
		if !st.header {
			// A crash while creating the segment: nothing in it was ever
			// acknowledged. Remove it and continue from the one before.
			w.log.Warn("audit: removing segment torn before its header was written", "segment", last.Num)
			if err := os.Remove(last.Path); err != nil {
				return err
			}
			segs = segs[:len(segs)-1]
			continue
		}
		w.seq, w.last = st.seq, st.last
		if st.torn > 0 {
			w.log.Warn("audit: cutting off a torn tail left by a crash (never acknowledged)",
				"segment", last.Num, "offset", st.good, "bytes", st.torn)
			if err := os.Truncate(last.Path, st.good); err != nil {
				return err
			}
		}
		if st.sealed || last.Gz {
			return w.startSegment(last.Num+1, now)
		}
		f, err := w.opts.openFile(last.Path)
		if err != nil {
			return err
		}
		if st.torn > 0 {
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
		}
		w.f, w.segNum, w.segSize, w.segStart, w.segRecs = f, last.Num, st.good, st.start, st.recs
		w.setSyncFile(f)
		w.sinceCkpt, w.lastCkpt = st.sinceCkpt, now
		w.idx = b
		w.activeSeg.Store(last.Num)
		return nil
	}
	return w.startSegment(1, now)
}

// cleanup removes leftovers of interrupted maintenance: temporary files
// and plain segments whose compressed copy was completed.
func (w *Writer) cleanup() error {
	ents, err := os.ReadDir(w.dir)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, de := range ents {
		have[de.Name()] = true
	}
	for _, de := range ents {
		name := de.Name()
		switch {
		case strings.HasPrefix(name, segPrefix) && strings.HasSuffix(name, tmpExt):
			if err := os.Remove(filepath.Join(w.dir, name)); err != nil {
				return err
			}
		case strings.HasPrefix(name, segPrefix) && strings.HasSuffix(name, segExt) && have[name+".gz"]:
			if err := os.Remove(filepath.Join(w.dir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// tailState is what recovery learns from the last segment.
type tailState struct {
	header    bool
	sealed    bool
	seq       uint64
	last      Hash
	start     time.Time
	recs      int
	sinceCkpt int
	good      int64 // offset after the last complete entry
	torn      int64 // bytes of an unterminated last line
}

// scanTail reads a segment, checking its internal chain, and reports
// where it ends.
func scanTail(s segFile, b *indexBuilder) (tailState, error) {
	var st tailState
	rc, err := openSegment(s)
	if err != nil {
		return st, err
	}
	defer rc.Close()
	lr := newLineReader(rc)
	for n := 0; ; n++ {
		line, off, err := lr.next()
		if err == io.EOF {
			return st, nil
		}
		if errors.Is(err, errTorn) {
			st.torn = int64(len(line))
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("line %d: %w", n+1, err)
		}
		e, err := parseLine(line)
		if err != nil {
			return st, fmt.Errorf("line %d (offset %d): %w", n+1, off, err)
		}
		if st.sealed {
			return st, fmt.Errorf("line %d: entry after the seal", n+1)
		}
		if n == 0 {
			if e.Kind != kindHeader || e.Seg != s.Num {
				return st, fmt.Errorf("line 1 is not this segment's header")
			}
			st.header, st.start = true, e.Time
		} else {
			if e.Prev != st.last {
				return st, fmt.Errorf("line %d: chain broken", n+1)
			}
			switch e.Kind {
			case kindRecord:
				if e.Seq != st.seq+1 {
					return st, fmt.Errorf("line %d: seq %d after %d", n+1, e.Seq, st.seq)
				}
				st.recs++
				st.sinceCkpt++
				b.event(e.Seq, e.Event)
			case kindCheckpoint:
				st.sinceCkpt = 0
				st.sealed = e.Seal
			default:
				return st, fmt.Errorf("line %d: unexpected %s entry", n+1, e.Kind)
			}
		}
		st.seq, st.last = e.Seq, e.Hash
		st.good = lr.off
	}
}
