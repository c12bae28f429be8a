package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The on-disk log. A log is a directory of segment files
// seg-<16 digits>.wal (the active one and sealed ones not yet compressed)
// and seg-<16 digits>.wal.gz (sealed and compressed), plus seg-N.idx query
// indexes. A segment is JSON lines; every line is an entry and every entry
// is hash-chained to the one before it, across segments:
//
//	{"k":"hdr","v":1,"seg":2,"seq":1041,"t":"...","prev":"<hex>","h":"<hex>"}
//	{"k":"rec","seq":1042,"prev":"<hex>","ev":{...},"h":"<hex>"}
//	{"k":"ckpt","seq":1042,"t":"...","prev":"<hex>","sig":"<b64>","h":"<hex>"}
//	{"k":"ckpt","seq":1042,"t":"...","prev":"<hex>","seal":true,"sig":"<b64>","h":"<hex>"}
//
// h = SHA-256(prev || body), where prev is the 32-byte hash of the entry
// before and body is the line without its trailing `,"h":"<hex>"` (the
// closing brace kept): the stored bytes are the canonical bytes. The
// header names the last seq and hash of the segment before it; a sealed
// segment ends with a checkpoint marked seal. Checkpoints sign
// (seq, prev): the last record's seq and the hash of the entry before.

const (
	formatVersion = 1
	segPrefix     = "seg-"
	segExt        = ".wal"
	gzExt         = ".wal.gz"
	idxExt        = ".idx"
	tmpExt        = ".tmp"

	kindHeader     = "hdr"
	kindRecord     = "rec"
	kindCheckpoint = "ckpt"

	hashSuffixLen = len(`,"h":"`) + 64 + len(`"}`)
	// maxLine bounds one entry; longer input is malformed, never buffered whole.
	maxLine = 1 << 20
)

// hashLen is the size of a chain hash.
const hashLen = sha256.Size

// Hash is a chain hash.
type Hash [hashLen]byte

// String returns the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 2*hashLen {
		return fmt.Errorf("hash: want %d hex digits, got %d", 2*hashLen, len(b))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// Cut records a retention cut: segments before Seg were deleted on
// purpose, and Seg's header (whose previous hash is Prev, last seq Seq)
// anchors what remains.
type Cut struct {
	Seg  uint64 `json:"seg"`
	Seq  uint64 `json:"seq"`
	Prev Hash   `json:"prev"`
}

// entry is one parsed line.
type entry struct {
	Kind    string          `json:"k"`
	Version int             `json:"v,omitempty"`
	Seg     uint64          `json:"seg,omitempty"`
	Seq     uint64          `json:"seq"`
	Time    time.Time       `json:"t,omitzero"`
	Prev    Hash            `json:"prev"`
	Event   json.RawMessage `json:"ev,omitempty"`
	Seal    bool            `json:"seal,omitempty"`
	Cut     *Cut            `json:"cut,omitempty"`
	Sig     []byte          `json:"sig,omitempty"`
	Hash    Hash            `json:"-"`
}

// wireEvent is Event as stored: lowercase keys, empty fields left out.
// encoding/json sorts map keys, so the encoding is deterministic.
type wireEvent struct {
	Time      time.Time         `json:"time"`
	Type      string            `json:"type"`
	Actor     string            `json:"actor,omitempty"`
	Subject   string            `json:"subject,omitempty"`
	Decision  string            `json:"decision,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Source    string            `json:"source,omitempty"`
	Service   string            `json:"service,omitempty"`
	User      string            `json:"user,omitempty"`
	App       string            `json:"app,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
	TraceID   string            `json:"trace_id,omitempty"`
	Result    string            `json:"result,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
}

func toWire(e Event) wireEvent {
	return wireEvent{Time: e.Time.UTC(), Type: e.Type, Actor: e.Actor, Subject: e.Subject, Decision: e.Decision,
		Reason: e.Reason, Source: e.Source, Service: e.Service, User: e.User, App: e.App,
		RequestID: e.RequestID, TraceID: e.TraceID, Result: e.Result, Fields: e.FieldMap()}
}

func (w wireEvent) event() Event {
	return Event{Time: w.Time, Type: w.Type, Actor: w.Actor, Subject: w.Subject, Decision: w.Decision,
		Reason: w.Reason, Source: w.Source, Service: w.Service, User: w.User, App: w.App,
		RequestID: w.RequestID, TraceID: w.TraceID, Result: w.Result, Fields: w.Fields}
}

// decodeEvent parses the stored form of an event.
func decodeEvent(b []byte) (Event, error) {
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return Event{}, err
	}
	return w.event(), nil
}

// appendRecordBody appends the body of a record entry (no hash) to buf.
func appendRecordBody(buf []byte, seq uint64, prev Hash, ev []byte) []byte {
	buf = append(buf, `{"k":"rec","seq":`...)
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, `,"prev":"`...)
	buf = hex.AppendEncode(buf, prev[:])
	buf = append(buf, `","ev":`...)
	buf = append(buf, ev...)
	buf = append(buf, '}')
	return buf
}

// sealLine turns the body at buf[start:] into a full line: it computes the
// entry's hash over prev || body and appends it, returning the new buffer
// and the hash.
func sealLine(buf []byte, start int, prev Hash) ([]byte, Hash) {
	h := chainHash(prev, buf[start:])
	buf = buf[:len(buf)-1] // drop the closing brace
	buf = append(buf, `,"h":"`...)
	buf = hex.AppendEncode(buf, h[:])
	buf = append(buf, "\"}\n"...)
	return buf, h
}

func chainHash(prev Hash, body []byte) Hash {
	d := sha256.New()
	d.Write(prev[:])
	d.Write(body)
	var h Hash
	d.Sum(h[:0])
	return h
}

// appendEntry marshals a non-record entry and appends it as a line.
func appendEntry(buf []byte, e *entry) ([]byte, Hash, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return buf, Hash{}, err
	}
	start := len(buf)
	buf = append(buf, body...)
	buf, h := sealLine(buf, start, e.Prev)
	return buf, h, nil
}

// errMalformed marks a line that is not a well-formed entry.
var errMalformed = errors.New("malformed entry")

// parseLine parses one line (without its newline) and checks that its
// stored hash is SHA-256(prev || body). It returns errMalformed (wrapped)
// when the line cannot be read and errHashMismatch when it reads but its
// hash is wrong: the line was edited.
func parseLine(line []byte) (entry, error) {
	var e entry
	if len(line) < hashSuffixLen+2 || line[0] != '{' {
		return e, fmt.Errorf("%w: too short or not an object", errMalformed)
	}
	suffix := line[len(line)-hashSuffixLen:]
	if !bytes.HasPrefix(suffix, []byte(`,"h":"`)) || !bytes.HasSuffix(suffix, []byte(`"}`)) {
		return e, fmt.Errorf("%w: no trailing hash", errMalformed)
	}
	if err := e.Hash.UnmarshalText(suffix[6 : 6+64]); err != nil {
		return e, fmt.Errorf("%w: %v", errMalformed, err)
	}
	head := line[:len(line)-hashSuffixLen] // the body without its closing brace
	if !parseRecordHead(head, &e) {
		body := make([]byte, 0, len(head)+1)
		body = append(append(body, head...), '}')
		if err := json.Unmarshal(body, &e); err != nil {
			return e, fmt.Errorf("%w: %v", errMalformed, err)
		}
	}
	switch e.Kind {
	case kindHeader, kindRecord, kindCheckpoint:
	default:
		return e, fmt.Errorf("%w: unknown kind %q", errMalformed, e.Kind)
	}
	if e.Kind == kindRecord && len(e.Event) == 0 {
		return e, fmt.Errorf("%w: record without event", errMalformed)
	}
	d := sha256.New()
	d.Write(e.Prev[:])
	d.Write(head)
	d.Write([]byte{'}'})
	var h Hash
	if d.Sum(h[:0]); h != e.Hash {
		return e, errHashMismatch
	}
	return e, nil
}

// parseRecordHead is the fast path for the record lines the writer
// writes, {"k":"rec","seq":N,"prev":"<hex>","ev":{...}, read without
// encoding/json. It reports false for anything else, which then takes the
// general path; what it accepts, the general path reads the same way.
// e.Event aliases head.
func parseRecordHead(head []byte, e *entry) bool {
	const p1, p2, p3 = `{"k":"rec","seq":`, `,"prev":"`, `","ev":`
	rest, ok := bytes.CutPrefix(head, []byte(p1))
	if !ok {
		return false
	}
	i := 0
	for i < len(rest) && i < 20 && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || (i > 1 && rest[0] == '0') {
		return false
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil {
		return false
	}
	rest, ok = bytes.CutPrefix(rest[i:], []byte(p2))
	var prev Hash
	if !ok || len(rest) < 64 || prev.UnmarshalText(rest[:64]) != nil {
		return false
	}
	ev, ok := bytes.CutPrefix(rest[64:], []byte(p3))
	if !ok || len(ev) < 2 || ev[0] != '{' || !json.Valid(ev) {
		return false
	}
	e.Kind, e.Seq, e.Prev, e.Event = kindRecord, seq, prev, ev
	return true
}

var errHashMismatch = errors.New("hash does not match content")

// lineReader reads newline-terminated lines, reporting the byte offset of
// each and a final unterminated fragment separately.
type lineReader struct {
	r   *bufio.Reader
	off int64
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 256<<10)}
}

// next returns the next line without its newline and its offset. At the
// end it returns io.EOF; a last fragment without newline is returned with
// errTorn; a line longer than maxLine with errMalformed (and the reader
// is no longer usable).
func (lr *lineReader) next() ([]byte, int64, error) {
	off := lr.off
	line, err := lr.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		buf := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(buf) <= maxLine {
			line, err = lr.r.ReadSlice('\n')
			buf = append(buf, line...)
		}
		if len(buf) > maxLine {
			return nil, off, fmt.Errorf("%w: line longer than %d bytes", errMalformed, maxLine)
		}
		line = buf
	}
	lr.off += int64(len(line))
	if err == io.EOF {
		if len(line) == 0 {
			return nil, off, io.EOF
		}
		return line, off, errTorn
	}
	if err != nil {
		return nil, off, err
	}
	return line[:len(line)-1], off, nil
}

var errTorn = errors.New("unterminated last line")

// segFile is one segment on disk.
type segFile struct {
	Num  uint64
	Path string
	Gz   bool
}

func segName(num uint64) string { return fmt.Sprintf("%s%016d%s", segPrefix, num, segExt) }
func idxName(num uint64) string { return fmt.Sprintf("%s%016d%s", segPrefix, num, idxExt) }

// listSegments returns the segments in dir by number. When both the plain
// and the compressed file exist (a crash during compression), the plain
// file is used.
func listSegments(dir string) ([]segFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	byNum := map[uint64]segFile{}
	for _, de := range ents {
		name := de.Name()
		if !strings.HasPrefix(name, segPrefix) {
			continue
		}
		var gz bool
		var digits string
		switch {
		case strings.HasSuffix(name, gzExt):
			gz, digits = true, strings.TrimSuffix(strings.TrimPrefix(name, segPrefix), gzExt)
		case strings.HasSuffix(name, segExt):
			digits = strings.TrimSuffix(strings.TrimPrefix(name, segPrefix), segExt)
		default:
			continue
		}
		if len(digits) != 16 {
			continue
		}
		n, err := strconv.ParseUint(digits, 10, 64)
		if err != nil {
			continue
		}
		if prev, ok := byNum[n]; ok && !prev.Gz {
			continue
		}
		byNum[n] = segFile{Num: n, Path: filepath.Join(dir, name), Gz: gz}
	}
	out := make([]segFile, 0, len(byNum))
	for _, s := range byNum {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Num < out[j].Num })
	return out, nil
}

// openSegment opens a segment for reading, decompressing .gz files.
func openSegment(s segFile) (io.ReadCloser, error) {
	f, err := os.Open(s.Path)
	if err != nil && !s.Gz && errors.Is(err, os.ErrNotExist) {
		// Compressed since it was listed.
		s.Path, s.Gz = s.Path+".gz", true
		f, err = os.Open(s.Path)
	}
	if err != nil {
		return nil, err
	}
	if !s.Gz {
		return f, nil
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 256<<10))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", filepath.Base(s.Path), err)
	}
	return &gzFile{Reader: zr, f: f}, nil
}

type gzFile struct {
	*gzip.Reader
	f *os.File
}

func (g *gzFile) Close() error {
	err := g.Reader.Close()
	if cerr := g.f.Close(); err == nil {
		err = cerr
	}
	return err
}
