package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"time"
)

// segIndex summarizes a sealed segment so that queries skip segments that
// cannot match. It is an accelerator, not evidence: Verify ignores it.
type segIndex struct {
	Seg   uint64    `json:"seg"`
	First uint64    `json:"first"` // first record seq (0: no records)
	Last  uint64    `json:"last"`
	Count int       `json:"count"`
	Min   time.Time `json:"min"` // event times
	Max   time.Time `json:"max"`
	Bloom bloom     `json:"bloom"` // "p:"+principal and "s:"+service
}

// bloom is a Bloom filter sized for about 0.05% false positives (16
// bits and 11 hashes a key), so that a query for a principal absent from
// months of segments reads almost none of them.
type bloom struct {
	K    int    `json:"k"`
	Bits []byte `json:"bits"`
}

func newBloom(n int) bloom {
	m := max(n*16, 64)
	return bloom{K: 11, Bits: make([]byte, (m+7)/8)}
}

func bloomHashes(s string) (uint32, uint32) {
	h := fnv.New64a()
	h.Write([]byte(s))
	v := h.Sum64()
	return uint32(v), uint32(v>>32) | 1
}

func (b bloom) add(s string) {
	h1, h2 := bloomHashes(s)
	m := uint32(len(b.Bits) * 8)
	for i := range uint32(b.K) {
		p := (h1 + i*h2) % m
		b.Bits[p/8] |= 1 << (p % 8)
	}
}

func (b bloom) has(s string) bool {
	if len(b.Bits) == 0 {
		return true
	}
	h1, h2 := bloomHashes(s)
	m := uint32(len(b.Bits) * 8)
	for i := range uint32(b.K) {
		p := (h1 + i*h2) % m
		if b.Bits[p/8]&(1<<(p%8)) == 0 {
			return false
		}
	}
	return true
}

// indexBuilder accumulates a segment's index from its lines.
type indexBuilder struct {
	idx  segIndex
	keys map[string]struct{}
}

// line adds a record line read back from a segment.
func (b *indexBuilder) line(line []byte) {
	if !bytes.HasPrefix(line, []byte(`{"k":"rec"`)) {
		return
	}
	seq, ev, err := splitRecord(line)
	if err != nil {
		return
	}
	b.event(seq, ev)
}

// event adds a record from its stored event.
func (b *indexBuilder) event(seq uint64, ev []byte) {
	var e struct {
		Time                      time.Time
		Actor, User, App, Service string
	}
	if json.Unmarshal(ev, &e) != nil {
		return
	}
	b.add(seq, e.Time, e.Actor, e.User, e.App, e.Service)
}

// add adds one record.
func (b *indexBuilder) add(seq uint64, t time.Time, actor, user, app, service string) {
	if b.idx.Count == 0 {
		b.idx.First = seq
		b.idx.Min, b.idx.Max = t, t
	}
	b.idx.Last = seq
	b.idx.Count++
	if t.Before(b.idx.Min) {
		b.idx.Min = t
	}
	if t.After(b.idx.Max) {
		b.idx.Max = t
	}
	if b.keys == nil {
		b.keys = map[string]struct{}{}
	}
	for _, p := range [...]string{actor, user, app} {
		b.key("p:", p)
	}
	b.key("s:", service)
}

// key adds prefix+v to the keys, allocating only for a key not seen yet
// (a lookup by string(bytes) does not allocate): every request pays it.
func (b *indexBuilder) key(prefix, v string) {
	if v == "" {
		return
	}
	var kb [128]byte
	k := append(append(kb[:0], prefix...), v...)
	if _, ok := b.keys[string(k)]; !ok {
		b.keys[string(k)] = struct{}{}
	}
}

func (b *indexBuilder) finish(seg uint64) segIndex {
	b.idx.Seg = seg
	b.idx.Bloom = newBloom(len(b.keys))
	for k := range b.keys {
		b.idx.Bloom.add(k)
	}
	return b.idx
}

func readIndex(dir string, seg uint64) (segIndex, bool) {
	data, err := os.ReadFile(filepath.Join(dir, idxName(seg)))
	if err != nil {
		return segIndex{}, false
	}
	var idx segIndex
	if json.Unmarshal(data, &idx) != nil || idx.Seg != seg {
		return segIndex{}, false
	}
	return idx, true
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + tmpExt
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// maintain indexes and compresses sealed segments and applies retention,
// in the background, whenever a segment is sealed and once an hour.
func (w *Writer) maintain() {
	defer close(w.mdone)
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		w.maintainOnce()
		select {
		case <-w.kick:
		case <-tick.C:
		case <-w.stop:
			return
		}
	}
}

func (w *Writer) maintainOnce() {
	for {
		select {
		case idx := <-w.built:
			w.pending[idx.Seg] = idx
			continue
		default:
		}
		break
	}
	segs, err := listSegments(w.dir)
	if err != nil {
		w.log.Error("audit maintenance: list segments", "err", err)
		return
	}
	active := w.activeSeg.Load()
	for _, s := range segs {
		if s.Num >= active {
			break
		}
		select {
		case <-w.stop:
			return
		default:
		}
		if err := w.seal(s); err != nil {
			w.log.Error("audit maintenance: index and compress", "segment", s.Num, "err", err)
		}
	}
	if err := w.prune(segs, active); err != nil {
		w.log.Error("audit retention", "err", err)
	}
}

// seal writes a sealed segment's index and compressed copy when missing.
func (w *Writer) seal(s segFile) error {
	_, hasIdx := readIndex(w.dir, s.Num)
	built, haveBuilt := w.pending[s.Num]
	if !hasIdx && haveBuilt {
		// The writer indexed the segment as it wrote it.
		data, _ := json.Marshal(built)
		if err := writeFileAtomic(filepath.Join(w.dir, idxName(s.Num)), data); err != nil {
			return err
		}
		hasIdx = true
	}
	delete(w.pending, s.Num)
	if hasIdx && (s.Gz || w.opts.NoCompress) {
		return syncDir(w.dir)
	}
	rc, err := openSegment(s)
	if err != nil {
		return err
	}
	defer rc.Close()
	var b indexBuilder
	var zw *gzip.Writer
	var zf *os.File
	gzPath := filepath.Join(w.dir, segName(s.Num)+".gz")
	compress := !s.Gz && !w.opts.NoCompress
	if compress {
		if zf, err = os.OpenFile(gzPath+tmpExt, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return err
		}
		defer func() {
			if zf != nil {
				zf.Close()
				os.Remove(gzPath + tmpExt)
			}
		}()
		zw, _ = gzip.NewWriterLevel(zf, gzip.BestSpeed)
	}
	lr := newLineReader(rc)
	for {
		line, _, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("sealed segment %d: %w", s.Num, err)
		}
		if !hasIdx {
			b.line(line)
		}
		if compress {
			zw.Write(line)
			if _, err := zw.Write([]byte{'\n'}); err != nil {
				return err
			}
		}
	}
	if compress {
		if err := zw.Close(); err != nil {
			return err
		}
		if err := zf.Sync(); err != nil {
			return err
		}
		if err := zf.Close(); err != nil {
			return err
		}
		zf = nil
	}
	if !hasIdx {
		data, _ := json.Marshal(b.finish(s.Num))
		if err := writeFileAtomic(filepath.Join(w.dir, idxName(s.Num)), data); err != nil {
			return err
		}
	}
	if compress {
		if err := os.Rename(gzPath+tmpExt, gzPath); err != nil {
			return err
		}
		if err := syncDir(w.dir); err != nil {
			return err
		}
		if err := os.Remove(s.Path); err != nil {
			return err
		}
	}
	return syncDir(w.dir)
}

// prune deletes the oldest sealed segments whose newest record is older
// than the retention period. Before deleting, it writes a signed
// checkpoint recording the cut, so the remaining log still verifies and
// a deletion nobody recorded does not.
func (w *Writer) prune(segs []segFile, active uint64) error {
	if w.opts.Retention < 0 {
		return nil
	}
	horizon := w.opts.Now().Add(-w.opts.Retention)
	n, held := 0, 0
	var shipped uint64
	if w.opts.Shipped != nil {
		shipped = w.opts.Shipped()
	}
	for _, s := range segs {
		if s.Num >= active {
			break
		}
		idx, ok := readIndex(w.dir, s.Num)
		if !ok || idx.Count == 0 || !idx.Max.Before(horizon) {
			break
		}
		if w.opts.Shipped != nil && (held > 0 || idx.Last > shipped) {
			// Not delivered yet: never deleted unshipped. Counted, with
			// the segments after it that retention would take too.
			held += int(idx.Last - max(idx.First-1, shipped))
			continue
		}
		n++
	}
	w.opts.Metrics.unshippedPastRetention(held)
	if held > 0 {
		w.log.Warn("audit retention: records past the retention period are kept because they are not shipped yet",
			"records", held, "shipped_up_to", shipped, "horizon", horizon)
	}
	// The newest segment listed stays, whatever its age: its header
	// carries the cut. (A rotation between listing the segments and
	// reading the active one leaves the active segment out of segs.)
	n = min(n, len(segs)-1)
	if n <= 0 {
		return nil
	}
	keep := segs[n]
	hdr, err := readHeader(keep)
	if err != nil {
		return fmt.Errorf("segment %d: %w", keep.Num, err)
	}
	cut := &Cut{Seg: keep.Num, Seq: hdr.Seq, Prev: hdr.Prev}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := w.submit(ctx, &request{cut: cut, res: make(chan result, 1)}); err != nil {
		if errors.Is(err, ErrClosed) {
			return nil
		}
		return fmt.Errorf("record retention cut: %w", err)
	}
	for _, s := range segs[:n] {
		for _, p := range []string{filepath.Join(w.dir, segName(s.Num)), filepath.Join(w.dir, segName(s.Num)+".gz"), filepath.Join(w.dir, idxName(s.Num))} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	w.log.Info("audit retention: deleted old segments", "segments", n, "first_kept", keep.Num, "horizon", horizon)
	return syncDir(w.dir)
}

// readHeader reads a segment's first entry.
func readHeader(s segFile) (entry, error) {
	rc, err := openSegment(s)
	if err != nil {
		return entry{}, err
	}
	defer rc.Close()
	line, _, err := newLineReader(rc).next()
	if err != nil {
		return entry{}, err
	}
	e, err := parseLine(line)
	if err != nil {
		return entry{}, err
	}
	if e.Kind != kindHeader {
		return entry{}, errors.New("first entry is not a header")
	}
	return e, nil
}
