package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Record is one event read back from the log.
type Record struct {
	Seq     uint64
	Segment uint64
	Event   Event
}

// Filter selects records. Zero fields match everything; Principal matches
// an event's Actor (SPIFFE ID), User or App.
type Filter struct {
	Since, Until time.Time // Since inclusive, Until exclusive, on event time
	AfterSeq     uint64    // only records with a larger seq
	Principal    string
	Service      string
	Decision     string
	Reason       string
	Type         string
}

func (f Filter) match(e Event) bool {
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !e.Time.Before(f.Until) {
		return false
	}
	if f.Principal != "" && e.Actor != f.Principal && e.User != f.Principal && e.App != f.Principal {
		return false
	}
	return (f.Service == "" || e.Service == f.Service) &&
		(f.Decision == "" || e.Decision == f.Decision) &&
		(f.Reason == "" || e.Reason == f.Reason) &&
		(f.Type == "" || e.Type == f.Type)
}

// skip reports whether a segment's index rules out every match.
func (f Filter) skip(idx segIndex) bool {
	if idx.Count == 0 || idx.Last <= f.AfterSeq {
		return true
	}
	if !f.Since.IsZero() && idx.Max.Before(f.Since) {
		return true
	}
	if !f.Until.IsZero() && !idx.Min.Before(f.Until) {
		return true
	}
	if f.Principal != "" && !idx.Bloom.has("p:"+f.Principal) {
		return true
	}
	if f.Service != "" && !idx.Bloom.has("s:"+f.Service) {
		return true
	}
	return false
}

// QueryStats says how much a query read.
type QueryStats struct {
	Segments int // segments in the log
	Skipped  int // skipped thanks to their index
	Read     int // opened and read
	Scanned  int // record lines looked at
	Matched  int
}

// ErrStop may be returned by a Query callback to end the query early
// without an error.
var ErrStop = errors.New("stop")

// Query calls fn, in seq order, for each record in dir that matches f.
// Segments whose index rules out a match are not read. Query trusts the
// log: it does not check hashes (Verify does).
func Query(ctx context.Context, dir string, f Filter, fn func(Record) error) (QueryStats, error) {
	var st QueryStats
	segs, err := listSegments(dir)
	if err != nil {
		return st, err
	}
	st.Segments = len(segs)
	var needles [][]byte
	for _, s := range []string{f.Principal, f.Service, f.Reason} {
		if s != "" {
			q, _ := json.Marshal(s)
			needles = append(needles, q)
		}
	}
	for _, s := range segs {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if idx, ok := readIndex(dir, s.Num); ok && f.skip(idx) {
			st.Skipped++
			continue
		}
		st.Read++
		err := scanSegment(s, func(line []byte) error {
			st.Scanned++
			for _, n := range needles {
				if !bytes.Contains(line, n) {
					return nil
				}
			}
			if !f.Since.IsZero() || !f.Until.IsZero() {
				if t, ok := fastTime(line); ok && (t.Before(f.Since) || (!f.Until.IsZero() && !t.Before(f.Until))) {
					return nil
				}
			}
			r, err := parseRecordFast(line)
			if err != nil {
				return fmt.Errorf("segment %d: %w", s.Num, err)
			}
			if r.Seq <= f.AfterSeq || !f.match(r.Event) {
				return nil
			}
			r.Segment = s.Num
			st.Matched++
			return fn(r)
		})
		if errors.Is(err, ErrStop) {
			return st, nil
		}
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// scanSegment calls fn with every complete record line of a segment.
func scanSegment(s segFile, fn func(line []byte) error) error {
	rc, err := openSegment(s)
	if err != nil {
		return err
	}
	defer rc.Close()
	lr := newLineReader(rc)
	for {
		line, _, err := lr.next()
		if err == io.EOF || errors.Is(err, errTorn) {
			return nil
		}
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(line, []byte(`{"k":"rec"`)) {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
}

var evTimePrefix = []byte(`"ev":{"time":"`)

// fastTime extracts a record's event time without decoding the line.
func fastTime(line []byte) (time.Time, bool) {
	i := bytes.Index(line, evTimePrefix)
	if i < 0 {
		return time.Time{}, false
	}
	rest := line[i+len(evTimePrefix):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	return t, err == nil
}

// splitRecord finds a record line's seq and the bytes of its event
// without checking its hash.
func splitRecord(line []byte) (uint64, []byte, error) {
	const p = `{"k":"rec","seq":`
	if !bytes.HasPrefix(line, []byte(p)) {
		return 0, nil, fmt.Errorf("%w: not a record", errMalformed)
	}
	rest := line[len(p):]
	i := bytes.IndexByte(rest, ',')
	if i < 0 {
		return 0, nil, fmt.Errorf("%w: no seq", errMalformed)
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: seq: %v", errMalformed, err)
	}
	j := bytes.Index(line, []byte(`"ev":`))
	if j < 0 || j+5 > len(line)-hashSuffixLen {
		return 0, nil, fmt.Errorf("%w: no event", errMalformed)
	}
	return seq, line[j+5 : len(line)-hashSuffixLen], nil
}

// parseRecordFast reads a record line's seq and event without checking
// its hash.
func parseRecordFast(line []byte) (Record, error) {
	seq, ev, err := splitRecord(line)
	if err != nil {
		return Record{}, err
	}
	e, err := decodeEvent(ev)
	if err != nil {
		return Record{}, fmt.Errorf("%w: event: %v", errMalformed, err)
	}
	return Record{Seq: seq, Event: e}, nil
}

// MarshalJSON writes a record as its seq and the event in the log's own
// field names.
func (r Record) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Seq uint64 `json:"seq"`
		wireEvent
	}{r.Seq, toWire(r.Event)})
}
