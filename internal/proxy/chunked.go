package proxy

import (
	"math"
	"net/http"
)

// Body violations. The head of the request is already with net/http when
// they are found, so the guard cannot answer: the handler's Body.Read fails
// with a [FramingError] and the connection is not reused.
var (
	vChunkSize     = bodyViolation(http.StatusBadRequest, "bad chunked encoding: invalid chunk size")
	vChunkExt      = bodyViolation(http.StatusBadRequest, "bad chunked encoding: invalid chunk extension")
	vChunkLine     = bodyViolation(http.StatusBadRequest, "bad chunked encoding: chunk size line too long")
	vChunkCRLF     = bodyViolation(http.StatusBadRequest, "bad chunked encoding: missing CRLF")
	vChunkOverhead = bodyViolation(http.StatusBadRequest, "bad chunked encoding: too much non-data")
	vChunkTooLarge = bodyViolation(http.StatusRequestEntityTooLarge, "request body too large")
	vTrailerFold   = bodyViolation(http.StatusBadRequest, "bad chunked encoding: obsolete line folding in trailer")
	vTrailerName   = bodyViolation(http.StatusBadRequest, "bad chunked encoding: invalid trailer field name")
	vTrailerUnder  = bodyViolation(http.StatusBadRequest, "bad chunked encoding: underscore in trailer field name")
	vTrailerValue  = bodyViolation(http.StatusBadRequest, "bad chunked encoding: control character in trailer")
	vTrailerField  = bodyViolation(http.StatusBadRequest, "bad chunked encoding: framing field in trailer")
	vTrailerSize   = bodyViolation(http.StatusRequestHeaderFieldsTooLarge, "bad chunked encoding: trailer too large")
	vTrailerCount  = bodyViolation(http.StatusRequestHeaderFieldsTooLarge, "bad chunked encoding: too many trailer fields")
)

const (
	// maxChunkLine bounds a chunk-size line, extensions included, CRLF
	// excluded (net/http allows < 4096).
	maxChunkLine = 1024
	// maxTrailerBytes bounds the trailer section, final CRLF included:
	// net/http only reads trailers whose end it can see in its 4 KiB
	// buffer.
	maxTrailerBytes = 4096
	// maxChunkExcess mirrors net/http's bound on chunk overhead: 16 bytes
	// per chunk plus twice its data are free, 16 KiB beyond that is not.
	maxChunkExcess = 16 << 10
)

// States of the chunked-body scanner.
const (
	ckSize         uint8 = iota // chunk-size hex digits
	ckExt                       // chunk extension, up to CR
	ckSizeLF                    // LF ending the chunk-size line
	ckData                      // chunk data
	ckDataCR                    // CR after the data
	ckDataLF                    // LF after the data
	ckTrailerStart              // start of a trailer line (or of the final CRLF)
	ckTrailerName               // trailer field name
	ckTrailerValue              // trailer field value, up to CR
	ckTrailerLF                 // LF ending a trailer line
	ckEndLF                     // LF of the final CRLF
)

// chunkParser validates a chunked body (RFC 9112 §7.1) byte by byte, so it
// needs no buffer of its own; chunk data is skipped in bulk.
type chunkParser struct {
	st      uint8
	digits  int    // hex digits of the current chunk size
	line    int    // length of the current chunk-size line, CRLF excluded
	size    uint64 // size being parsed, then data left in the chunk
	excess  int64  // overhead beyond the free allowance, as net/http counts it
	total   int64  // body bytes so far
	trailer int    // trailer bytes so far
	fields  int    // trailer fields so far
	nameLen int
	name    [len("transfer-encoding")]byte // start of the trailer name
}

// inData reports whether the scanner is inside chunk data, where the caller
// may read straight into its destination.
func (p *chunkParser) inData() bool { return p.st == ckData && p.size > 0 }

// consumed records n bytes of chunk data read past the scanner.
func (p *chunkParser) consumed(n int) {
	p.size -= uint64(n)
	if p.size == 0 {
		p.st = ckDataCR
	}
}

// feed scans b from offset from (the bytes before were scanned by earlier
// calls). It returns how far it scanned, how many bytes of b may be released
// to net/http, whether the body ended (then scanned == release is where),
// and the violation that stopped it, if any.
//
// A chunk-size line is released only once complete, and the last chunk
// with the trailer section only once the body ended: net/http must not see
// the start of a line the guard may still refuse, or it would report its
// own error (or none) instead of the guard's.
func (p *chunkParser) feed(b []byte, from int, lim *Limits) (scanned, release int, done bool, v *violation) {
	i := from
	for i < len(b) {
		if p.st == ckData {
			k := uint64(len(b) - i)
			if k > p.size {
				k = p.size
			}
			i += int(k)
			p.consumed(int(k))
			release = i
			continue
		}
		if p.st >= ckTrailerStart {
			p.trailer++
			if p.trailer > maxTrailerBytes {
				return i, release, false, vTrailerSize
			}
		}
		c := b[i]
		switch p.st {
		case ckSize:
			switch d := unhex(c); {
			case d != 0xff:
				if p.digits == 16 {
					return i, release, false, vChunkSize
				}
				p.size = p.size<<4 | uint64(d)
				p.digits++
				p.line++
			case c == ';' && p.digits > 0:
				p.st = ckExt
				p.line++
			case c == '\r' && p.digits > 0:
				p.st = ckSizeLF
			default:
				return i, release, false, vChunkSize
			}
		case ckExt:
			switch {
			case c == '\r':
				p.st = ckSizeLF
			case !extChar[c]:
				return i, release, false, vChunkExt
			default:
				p.line++
				if p.line > maxChunkLine {
					return i, release, false, vChunkLine
				}
			}
		case ckSizeLF:
			if c != '\n' {
				return i, release, false, vChunkCRLF
			}
			if v := p.endSizeLine(lim); v != nil {
				return i, release, false, v
			}
			if p.st == ckData {
				release = i + 1
			}
		case ckDataCR:
			if c != '\r' {
				return i, release, false, vChunkCRLF
			}
			p.st = ckDataLF
			release = i + 1
		case ckDataLF:
			if c != '\n' {
				return i, release, false, vChunkCRLF
			}
			p.st = ckSize
			release = i + 1
		case ckTrailerStart:
			switch {
			case c == '\r':
				p.st = ckEndLF
			case isOWS(c):
				return i, release, false, vTrailerFold
			case nameChar[c]:
				p.fields++
				if p.fields > lim.MaxHeaders {
					return i, release, false, vTrailerCount
				}
				p.nameLen = 0
				p.addName(c)
				p.st = ckTrailerName
			case c == '_':
				return i, release, false, vTrailerUnder
			default:
				return i, release, false, vTrailerName
			}
		case ckTrailerName:
			switch {
			case c == ':':
				if p.nameLen <= len(p.name) && isFramingField(p.name[:p.nameLen]) {
					return i, release, false, vTrailerField
				}
				p.st = ckTrailerValue
			case nameChar[c]:
				p.addName(c)
			case c == '_':
				return i, release, false, vTrailerUnder
			default:
				return i, release, false, vTrailerName
			}
		case ckTrailerValue:
			switch {
			case c == '\r':
				p.st = ckTrailerLF
			case !valueChar[c]:
				return i, release, false, vTrailerValue
			}
		case ckTrailerLF:
			if c != '\n' {
				return i, release, false, vChunkCRLF
			}
			p.st = ckTrailerStart
		case ckEndLF:
			if c != '\n' {
				return i, release, false, vChunkCRLF
			}
			return i + 1, i + 1, true, nil
		}
		i++
	}
	return i, release, false, nil
}

// endSizeLine accounts for a complete chunk-size line.
func (p *chunkParser) endSizeLine(lim *Limits) *violation {
	size := p.size
	if lim.MaxBodyBytes >= 0 && size > uint64(lim.MaxBodyBytes-p.total) {
		return vChunkTooLarge
	}
	if size >= 1<<62 || size > uint64(math.MaxInt64-p.total) {
		return vChunkSize // net/http's overhead arithmetic overflows past 2^62
	}
	// Same arithmetic as net/http's chunkedReader, so that whatever the
	// guard passes, net/http reads.
	p.excess += int64(p.line) + 2
	if free := 16 + 2*size; free >= uint64(p.excess) {
		p.excess = 0
	} else {
		p.excess -= int64(free)
	}
	if p.excess > maxChunkExcess {
		return vChunkOverhead
	}
	p.line, p.digits = 0, 0
	if size == 0 {
		p.st = ckTrailerStart
		return nil
	}
	p.total += int64(size)
	p.st = ckData
	return nil
}

// addName keeps the lower-cased start of a trailer field name, enough to
// recognize the framing fields; nameLen counts past the kept bytes.
func (p *chunkParser) addName(c byte) {
	if p.nameLen < len(p.name) {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		p.name[p.nameLen] = c
	}
	p.nameLen++
}
