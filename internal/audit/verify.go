package audit

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ProblemKind names what Verify found wrong.
type ProblemKind string

// The problems Verify reports. Each is evidence of tampering or of damage
// beyond a crash; a torn tail is reported apart (Report.TornTail).
const (
	ProblemModified         ProblemKind = "modified"          // an entry's content does not match its hash
	ProblemChainBreak       ProblemKind = "chain-break"       // an entry does not follow the one before: deleted, inserted or reordered
	ProblemSequence         ProblemKind = "sequence"          // record seqs skip (deleted) or go back (inserted, reordered)
	ProblemMissingSegment   ProblemKind = "missing-segment"   // a whole segment is gone or replaced
	ProblemTruncatedSegment ProblemKind = "truncated-segment" // a sealed segment lost its end
	ProblemBadSignature     ProblemKind = "bad-signature"     // a checkpoint's signature is missing or wrong
	ProblemCheckpoint       ProblemKind = "checkpoint"        // a checkpoint names a state the chain is not in
	ProblemHeadMissing      ProblemKind = "head-missing"      // the oldest segments are gone without a recorded retention cut
	ProblemMalformed        ProblemKind = "malformed"         // a line is not an entry at all
)

// Problem is one finding of Verify.
type Problem struct {
	Kind    ProblemKind `json:"kind"`
	Segment uint64      `json:"segment"`
	Line    int         `json:"line,omitempty"`
	Seq     uint64      `json:"seq,omitempty"`
	Msg     string      `json:"msg"`
}

func (p Problem) String() string {
	loc := fmt.Sprintf("segment %d", p.Segment)
	if p.Line > 0 {
		loc += fmt.Sprintf(" line %d", p.Line)
	}
	return fmt.Sprintf("%s: %s: %s", p.Kind, loc, p.Msg)
}

// TornTail is an unterminated last entry at the end of the newest segment:
// what a crash in the middle of a write leaves. The record in it was never
// acknowledged. Verify reports it and leaves it; the Writer cuts it off
// when it next opens the log.
type TornTail struct {
	Segment uint64 `json:"segment"`
	Offset  int64  `json:"offset"`
	Bytes   int64  `json:"bytes"`
}

// Report is the outcome of Verify.
type Report struct {
	Segments          int       `json:"segments"`
	Records           uint64    `json:"records"`
	FirstSeq          uint64    `json:"first_seq"`
	LastSeq           uint64    `json:"last_seq"`
	LastHash          Hash      `json:"last_hash"`
	Checkpoints       int       `json:"checkpoints"`
	SignaturesChecked bool      `json:"signatures_checked"`
	LastSignedSeq     uint64    `json:"last_signed_seq"` // newest record covered by a verified checkpoint signature
	Cut               *Cut      `json:"retention_cut,omitempty"`
	TornTail          *TornTail `json:"torn_tail,omitempty"`
	Problems          []Problem `json:"problems,omitempty"`
	Truncated         bool      `json:"problems_truncated,omitempty"` // more problems than were kept
}

// OK reports whether the log verified with no problem and no torn tail.
func (r *Report) OK() bool { return len(r.Problems) == 0 && r.TornTail == nil }

// Tampered reports whether Verify found evidence of tampering or damage
// (anything but a torn tail).
func (r *Report) Tampered() bool { return len(r.Problems) > 0 }

const maxProblems = 1000

// Verify checks the log in dir: every entry's hash, the chain across
// entries and segments, record sequence, seals, retention cuts, and, when
// pub is not nil, every checkpoint's signature. It returns an error only
// when it cannot read the log; what it finds is in the Report.
func Verify(dir string, pub crypto.PublicKey) (*Report, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("audit verify: %w", err)
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("audit verify: no segments in %s", dir)
	}
	v := newVerifier(pub)
	for i, s := range segs {
		if i > 0 && s.Num != segs[i-1].Num+1 {
			v.problem(ProblemMissingSegment, s.Num, 0, 0, fmt.Sprintf("segments %d to %d are missing", segs[i-1].Num+1, s.Num-1))
		}
		rc, err := openSegment(s)
		if err != nil {
			v.problem(ProblemMalformed, s.Num, 0, 0, err.Error())
			continue
		}
		err = v.segment(s.Num, rc, i == len(segs)-1)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("audit verify: segment %d: %w", s.Num, err)
		}
	}
	v.finish(segs[0].Num)
	return &v.r, nil
}

// verifier walks the chain across segments.
type verifier struct {
	pub       crypto.PublicKey
	r         Report
	started   bool // a first header anchored the chain
	prev      Hash
	seq       uint64
	firstSeg  uint64
	firstHdr  entry
	maxCut    *Cut
	resyncing bool
}

func newVerifier(pub crypto.PublicKey) *verifier {
	return &verifier{pub: pub, r: Report{SignaturesChecked: pub != nil}}
}

func (v *verifier) problem(k ProblemKind, seg uint64, line int, seq uint64, msg string) {
	if len(v.r.Problems) >= maxProblems {
		v.r.Truncated = true
		return
	}
	v.r.Problems = append(v.r.Problems, Problem{Kind: k, Segment: seg, Line: line, Seq: seq, Msg: msg})
}

// segment verifies one segment read from r; last says it is the newest,
// the only place a torn tail may be. Errors are read errors only.
func (v *verifier) segment(num uint64, r io.Reader, last bool) error {
	v.r.Segments++
	lr := newLineReader(r)
	lastKind := ""
	sealed := false
	n := 0
	for {
		line, off, err := lr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errTorn) {
			if last {
				v.r.TornTail = &TornTail{Segment: num, Offset: off, Bytes: int64(len(line))}
			} else {
				v.problem(ProblemTruncatedSegment, num, n+1, 0, "segment ends in the middle of an entry but newer segments follow")
			}
			lastKind = "torn"
			break
		}
		if errors.Is(err, errMalformed) {
			v.problem(ProblemMalformed, num, n+1, 0, err.Error())
			lastKind = "bad"
			break
		}
		if err != nil {
			return err
		}
		n++
		e, perr := parseLine(line)
		switch {
		case errors.Is(perr, errHashMismatch):
			v.problem(ProblemModified, num, n, e.Seq, fmt.Sprintf("%s entry (seq %d) was changed after it was written: its hash does not match", e.Kind, e.Seq))
		case perr != nil:
			v.problem(ProblemMalformed, num, n, 0, perr.Error())
			v.resyncing = true
			lastKind = "bad"
			continue
		}
		if sealed {
			v.problem(ProblemChainBreak, num, n, e.Seq, "entry after the segment's seal: appended or inserted")
			sealed = false
		}
		v.entry(num, n, &e)
		lastKind = e.Kind
		if e.Kind == kindCheckpoint && e.Seal {
			sealed = true
		}
	}
	if n == 0 && lastKind == "" {
		if last {
			v.r.TornTail = &TornTail{Segment: num}
		} else {
			v.problem(ProblemTruncatedSegment, num, 0, 0, "segment is empty but newer segments follow")
		}
		return nil
	}
	if !last && !sealed && lastKind != "torn" {
		v.problem(ProblemTruncatedSegment, num, n, v.seq, "segment does not end with its seal checkpoint: its end was cut off")
	}
	return nil
}

func (v *verifier) entry(seg uint64, line int, e *entry) {
	if line == 1 {
		if e.Kind != kindHeader {
			v.problem(ProblemMalformed, seg, line, e.Seq, "segment does not start with a header")
		} else if e.Seg != seg {
			v.problem(ProblemMissingSegment, seg, line, e.Seq, fmt.Sprintf("header says segment %d: the file was renamed or replaced", e.Seg))
		}
	} else if e.Kind == kindHeader {
		v.problem(ProblemChainBreak, seg, line, e.Seq, "a segment header in the middle of a segment: segments were spliced")
	}
	if !v.started {
		v.started = true
		v.firstSeg, v.firstHdr = seg, *e
		v.prev, v.seq = e.Prev, e.Seq
		v.r.FirstSeq = e.Seq + 1
	}
	if e.Prev != v.prev && !v.resyncing {
		if e.Kind == kindHeader {
			v.problem(ProblemMissingSegment, seg, line, e.Seq, fmt.Sprintf("header does not continue the previous segment (expected last seq %d): a segment was removed or replaced", v.seq))
		} else {
			v.problem(ProblemChainBreak, seg, line, e.Seq, describeBreak(e, v.seq))
		}
	}
	v.resyncing = false
	switch e.Kind {
	case kindHeader:
		if e.Seq != v.seq && e.Prev == v.prev {
			v.problem(ProblemSequence, seg, line, e.Seq, fmt.Sprintf("header says last seq %d, chain is at %d", e.Seq, v.seq))
		}
		v.seq = e.Seq
	case kindRecord:
		switch {
		case e.Seq == v.seq+1:
		case e.Seq > v.seq+1:
			v.problem(ProblemSequence, seg, line, e.Seq, fmt.Sprintf("records %d to %d are missing (deleted)", v.seq+1, e.Seq-1))
		default:
			v.problem(ProblemSequence, seg, line, e.Seq, fmt.Sprintf("seq %d after %d: records inserted or reordered", e.Seq, v.seq))
		}
		v.seq = e.Seq
		v.r.Records++
		v.r.LastSeq = e.Seq
	case kindCheckpoint:
		v.r.Checkpoints++
		if e.Seq != v.seq {
			v.problem(ProblemCheckpoint, seg, line, e.Seq, fmt.Sprintf("checkpoint names seq %d but the chain is at %d", e.Seq, v.seq))
		}
		if v.pub != nil {
			if err := verifyCheckpoint(v.pub, e); err != nil {
				v.problem(ProblemBadSignature, seg, line, e.Seq, err.Error())
			} else if e.Prev == v.prev && e.Seq == v.seq {
				v.r.LastSignedSeq = e.Seq
			}
		}
		if e.Cut != nil && (v.maxCut == nil || e.Cut.Seg > v.maxCut.Seg) {
			c := *e.Cut
			v.maxCut = &c
		}
	}
	v.prev = e.Hash
	v.r.LastHash = e.Hash
}

func describeBreak(e *entry, at uint64) string {
	switch {
	case e.Kind != kindRecord:
		return fmt.Sprintf("%s entry does not follow the entry before it (chain at seq %d)", e.Kind, at)
	case e.Seq > at+1:
		return fmt.Sprintf("record %d does not follow record %d: records deleted", e.Seq, at)
	case e.Seq <= at:
		return fmt.Sprintf("record %d does not follow record %d: records inserted or reordered", e.Seq, at)
	default:
		return fmt.Sprintf("record %d does not follow the entry before it: an entry was deleted, inserted or replaced", e.Seq)
	}
}

// finish checks the head of the log: either it starts at the beginning
// (segment 1, seq 0, zero hash) or a retention checkpoint records the cut.
func (v *verifier) finish(firstSeg uint64) {
	v.r.Cut = v.maxCut
	if !v.started {
		return
	}
	if v.r.Records == 0 {
		v.r.FirstSeq = 0
	}
	h := v.firstHdr
	if firstSeg == 1 && h.Seq == 0 && h.Prev == (Hash{}) {
		return
	}
	c := v.maxCut
	switch {
	case c == nil:
		v.problem(ProblemHeadMissing, firstSeg, 1, h.Seq, fmt.Sprintf("the log starts at segment %d (after seq %d) and no retention checkpoint records deleting what came before", firstSeg, h.Seq))
	case c.Seg < firstSeg:
		v.problem(ProblemHeadMissing, firstSeg, 1, h.Seq, fmt.Sprintf("retention cut at segment %d but the log starts at segment %d: segments %d to %d were deleted without a record", c.Seg, firstSeg, c.Seg, firstSeg-1))
	case c.Seg == firstSeg && (c.Prev != h.Prev || c.Seq != h.Seq):
		v.problem(ProblemHeadMissing, firstSeg, 1, h.Seq, "the first segment's header does not match the retention checkpoint: it was replaced")
	}
}

// Summary is a one-paragraph human description of r.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d segments, %d records (seq %d to %d), %d checkpoints", r.Segments, r.Records, r.FirstSeq, r.LastSeq, r.Checkpoints)
	if r.SignaturesChecked {
		fmt.Fprintf(&b, ", signatures checked (newest signed seq %d", r.LastSignedSeq)
		if r.LastSeq > r.LastSignedSeq {
			fmt.Fprintf(&b, "; %d newer records not yet covered by a signature", r.LastSeq-r.LastSignedSeq)
		}
		b.WriteString(")")
	} else {
		b.WriteString(", signatures NOT checked (pass the public key)")
	}
	if r.Cut != nil {
		fmt.Fprintf(&b, "; retention cut before segment %d (seq %d)", r.Cut.Seg, r.Cut.Seq)
	}
	return b.String()
}
