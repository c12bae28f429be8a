package proxy

import (
	"bytes"
	"net/http"
)

// A violation is one broken rule. Reasons are constant strings, safe to log
// and to send to the client: they name the rule, never echo the input.
type violation struct {
	status int
	reason string
	body   bool // found in a body: the head was already passed to net/http
}

func headViolation(status int, reason string) *violation {
	return &violation{status: status, reason: reason}
}

func bodyViolation(status int, reason string) *violation {
	return &violation{status: status, reason: reason, body: true}
}

// Head violations, answered by the guard itself.
var (
	vCLTE           = headViolation(http.StatusBadRequest, "ambiguous request: Content-Length with Transfer-Encoding")
	vMultiCL        = headViolation(http.StatusBadRequest, "ambiguous request: more than one Content-Length")
	vMultiTE        = headViolation(http.StatusBadRequest, "ambiguous request: more than one Transfer-Encoding")
	vBadCL          = headViolation(http.StatusBadRequest, "invalid Content-Length")
	vBadTE          = headViolation(http.StatusBadRequest, "unsupported Transfer-Encoding: only chunked is accepted")
	vTE10           = headViolation(http.StatusBadRequest, "ambiguous request: Transfer-Encoding in an HTTP/1.0 request")
	vNoHost         = headViolation(http.StatusBadRequest, "missing Host header")
	vMultiHost      = headViolation(http.StatusBadRequest, "ambiguous request: more than one Host header")
	vBadHost        = headViolation(http.StatusBadRequest, "invalid Host header")
	vHostMismatch   = headViolation(http.StatusBadRequest, "ambiguous request: Host header does not match the request target")
	vBadTrailerDecl = headViolation(http.StatusBadRequest, "invalid Trailer header: names a framing field")
	vObsFold        = headViolation(http.StatusBadRequest, "obsolete line folding in header")
	vNoColon        = headViolation(http.StatusBadRequest, "malformed header line: no colon")
	vEmptyName      = headViolation(http.StatusBadRequest, "malformed header line: empty field name")
	vUnderscore     = headViolation(http.StatusBadRequest, "invalid header name: underscore")
	vSpaceColon     = headViolation(http.StatusBadRequest, "invalid header name: whitespace before colon")
	vNameChar       = headViolation(http.StatusBadRequest, "invalid header name")
	vValueChar      = headViolation(http.StatusBadRequest, "invalid header value: control character")
	vBareLF         = headViolation(http.StatusBadRequest, "malformed request: line ending without CR")
	vBareCR         = headViolation(http.StatusBadRequest, "malformed request: CR without LF")
	vControl        = headViolation(http.StatusBadRequest, "malformed request: control character")
	vEmptyLine      = headViolation(http.StatusBadRequest, "malformed request: empty line before request line")
	vRequestLine    = headViolation(http.StatusBadRequest, "malformed request line")
	vMethod         = headViolation(http.StatusBadRequest, "malformed request line: invalid method")
	vVersion        = headViolation(http.StatusBadRequest, "malformed request line: invalid HTTP version")
	vVersion505     = headViolation(http.StatusHTTPVersionNotSupported, "unsupported HTTP version")
	vH2Preface      = headViolation(http.StatusHTTPVersionNotSupported, "HTTP/2 with prior knowledge is not supported on this listener")
	vTargetChar     = headViolation(http.StatusBadRequest, "invalid request target: bad character")
	vTargetEscape   = headViolation(http.StatusBadRequest, "invalid request target: bad percent-encoding")
	vTargetForm     = headViolation(http.StatusBadRequest, "invalid request target")
	vAuthority      = headViolation(http.StatusBadRequest, "invalid request target: bad authority")
	vTooLarge       = headViolation(http.StatusRequestHeaderFieldsTooLarge, "request header too large")
	vTooMany        = headViolation(http.StatusRequestHeaderFieldsTooLarge, "too many header fields")
	vLineTooLong    = headViolation(http.StatusRequestURITooLong, "request line too long")
	vTargetTooLong  = headViolation(http.StatusRequestURITooLong, "request target too long")
	vBodyTooLarge   = headViolation(http.StatusRequestEntityTooLarge, "request body too large")
	vTimeout        = headViolation(http.StatusRequestTimeout, "request header timeout")
	vIncomplete     = headViolation(http.StatusBadRequest, "malformed request: connection closed inside the request head")
)

// requestLineSlack is what a request line may hold besides its target:
// method, two spaces and the version. A partial request line longer than
// MaxURLBytes+requestLineSlack is answered 414 without waiting for its end.
const requestLineSlack = 64

// headParser validates one request head, line by line, as its bytes arrive.
// Offsets are relative to the start of the head, which the caller keeps
// contiguous in its buffer.
type headParser struct {
	scan    int // start of the first line not yet validated
	checked int // bytes of that (partial) line already scanned for controls
	fields  int

	http10   bool
	absForm  bool // absolute-form or authority-form target
	authOff  int  // its authority, for the Host comparison
	authEnd  int
	hasCL    bool
	hasTE    bool
	hasHost  bool
	hostOff  int
	hostEnd  int
	cl       int64
	chunked  bool
	complete bool
}

func (h *headParser) reset() { *h = headParser{} }

// parse validates the head at the start of b. It returns the length of the
// head once it is complete and valid, 0 while more bytes are needed, or the
// first violation.
func (h *headParser) parse(b []byte, lim *Limits) (int, *violation) {
	for {
		rest := b[h.scan:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return 0, h.partial(b, lim)
		}
		end := h.scan + i + 1
		start := h.scan
		if end > lim.MaxHeaderBytes {
			return 0, tooLarge(start == 0)
		}
		if i == 0 || rest[i-1] != '\r' {
			return 0, vBareLF
		}
		line := rest[:i-1]
		h.scan, h.checked = end, 0
		switch {
		case start == 0:
			if v := h.requestLine(line, lim); v != nil {
				return 0, v
			}
		case len(line) == 0:
			if v := h.finish(b, lim); v != nil {
				return 0, v
			}
			h.complete = true
			return end, nil
		default:
			if v := h.field(line, start, lim); v != nil {
				return 0, v
			}
		}
	}
}

func tooLarge(requestLine bool) *violation {
	if requestLine {
		return vLineTooLong
	}
	return vTooLarge
}

// partial checks an incomplete head so that garbage (a TLS handshake on a
// plaintext port, binary junk, an endless line) fails now rather than at the
// size limit or the timeout.
func (h *headParser) partial(b []byte, lim *Limits) *violation {
	if len(b) >= lim.MaxHeaderBytes {
		return tooLarge(h.scan == 0)
	}
	line := b[h.scan:]
	if h.scan == 0 && len(line) > lim.MaxURLBytes+requestLineSlack {
		return vLineTooLong
	}
	for i := h.checked; i < len(line); i++ {
		c := line[i]
		if c == '\r' {
			if i != len(line)-1 {
				return vBareCR
			}
			continue
		}
		if c < 0x20 && c != '\t' || c == 0x7f {
			return vControl
		}
	}
	h.checked = len(line)
	if h.checked > 0 && line[h.checked-1] == '\r' {
		h.checked-- // look at this CR again when its successor arrives
	}
	return nil
}

func (h *headParser) requestLine(line []byte, lim *Limits) *violation {
	if len(line) == 0 {
		return vEmptyLine
	}
	if len(line) > lim.MaxURLBytes+requestLineSlack {
		return vLineTooLong // as partial would have said of its start
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return vRequestLine
	}
	method, rest := line[:sp1], line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return vRequestLine
	}
	target, version := rest[:sp2], rest[sp2+1:]
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		h.http10 = true
	default:
		if isHTTPVersion(version) {
			if string(method) == "PRI" && string(target) == "*" {
				return vH2Preface
			}
			return vVersion505
		}
		return vVersion
	}
	if !isToken(method) {
		return vMethod
	}
	if len(target) == 0 {
		return vRequestLine
	}
	if len(target) > lim.MaxURLBytes {
		return vTargetTooLong
	}
	return h.target(method, target, sp1+1)
}

// isHTTPVersion reports whether v is "HTTP/" DIGIT ["." DIGIT]: a version
// that is well formed but that this guard does not serve.
func isHTTPVersion(v []byte) bool {
	if len(v) < 6 || string(v[:5]) != "HTTP/" || !isDigit(v[5]) {
		return false
	}
	switch len(v) {
	case 6:
		return true
	case 8:
		return v[6] == '.' && isDigit(v[7])
	}
	return false
}

// target validates the request target t, found at offset off of the head.
func (h *headParser) target(method, t []byte, off int) *violation {
	connect := string(method) == "CONNECT"
	switch {
	case t[0] == '/': // origin-form
		if connect {
			return vTargetForm
		}
		return checkPathQuery(t)
	case t[0] == '*': // asterisk-form
		if len(t) != 1 || string(method) != "OPTIONS" {
			return vTargetForm
		}
		return nil
	case connect: // authority-form
		if !validAuthority(t, true) {
			return vAuthority
		}
		h.absForm, h.authOff, h.authEnd = true, off, off+len(t)
		return nil
	}
	// absolute-form: what clients send to a forward proxy (the sidecar's
	// outbound side).
	n := 0
	switch {
	case hasPrefixFold(t, "http://"):
		n = len("http://")
	case hasPrefixFold(t, "https://"):
		n = len("https://")
	default:
		return vTargetForm
	}
	a := t[n:]
	e := bytes.IndexAny(a, "/?")
	if e < 0 {
		e = len(a)
	}
	if !validAuthority(a[:e], false) {
		return vAuthority
	}
	h.absForm, h.authOff, h.authEnd = true, off+n, off+n+e
	return checkPathQuery(a[e:])
}

// field validates one header field line found at offset off of the head.
func (h *headParser) field(line []byte, off int, lim *Limits) *violation {
	if isOWS(line[0]) {
		return vObsFold
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return vNoColon
	}
	if colon == 0 {
		return vEmptyName
	}
	name, value := line[:colon], line[colon+1:]
	if v := fieldNameViolation(name); v != nil {
		return v
	}
	if !validValue(value) {
		if bytes.IndexByte(value, '\r') >= 0 {
			return vBareCR
		}
		return vValueChar
	}
	h.fields++
	if h.fields > lim.MaxHeaders {
		return vTooMany
	}
	switch len(name) {
	case len("host"):
		if equalFold(name, "host") {
			return h.host(value, off+colon+1)
		}
	case len("trailer"):
		if equalFold(name, "trailer") {
			return checkTrailerDecl(value)
		}
	case len("content-length"):
		if equalFold(name, "content-length") {
			return h.contentLength(value)
		}
	case len("transfer-encoding"):
		if equalFold(name, "transfer-encoding") {
			return h.transferEncoding(value)
		}
	}
	return nil
}

// nameViolation says why name is not a valid field name.
func nameViolation(name []byte) *violation {
	if bytes.IndexByte(name, '_') >= 0 {
		return vUnderscore
	}
	if isOWS(name[len(name)-1]) {
		return vSpaceColon
	}
	if bytes.IndexByte(name, '\r') >= 0 {
		return vBareCR
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return vControl
		}
	}
	return vNameChar
}

func (h *headParser) host(value []byte, off int) *violation {
	if h.hasHost {
		return vMultiHost
	}
	h.hasHost = true
	v, cut := trimOWS(value)
	if !validAuthority(v, false) {
		return vBadHost
	}
	h.hostOff = off + cut
	h.hostEnd = h.hostOff + len(v)
	return nil
}

func (h *headParser) contentLength(value []byte) *violation {
	if h.hasTE {
		return vCLTE
	}
	if h.hasCL {
		return vMultiCL
	}
	h.hasCL = true
	v, _ := trimOWS(value)
	if bytes.IndexByte(v, ',') >= 0 {
		return vMultiCL
	}
	n, ok := parseDecimal(v)
	if !ok {
		return vBadCL
	}
	h.cl = n
	return nil
}

func (h *headParser) transferEncoding(value []byte) *violation {
	if h.hasCL {
		return vCLTE
	}
	if h.hasTE {
		return vMultiTE
	}
	h.hasTE = true
	if h.http10 {
		return vTE10
	}
	if v, _ := trimOWS(value); !equalFold(v, "chunked") {
		return vBadTE
	}
	h.chunked = true
	return nil
}

// checkTrailerDecl rejects a Trailer header that announces a field that
// frames or routes the message (net/http refuses the first three too).
func checkTrailerDecl(value []byte) *violation {
	for len(value) > 0 {
		var elem []byte
		if i := bytes.IndexByte(value, ','); i >= 0 {
			elem, value = value[:i], value[i+1:]
		} else {
			elem, value = value, nil
		}
		elem, _ = trimOWS(elem)
		if isFramingField(elem) {
			return vBadTrailerDecl
		}
	}
	return nil
}

func isFramingField(name []byte) bool {
	return equalFold(name, "content-length") || equalFold(name, "transfer-encoding") ||
		equalFold(name, "trailer") || equalFold(name, "host")
}

// finish runs the checks that need the whole head.
func (h *headParser) finish(b []byte, lim *Limits) *violation {
	if !h.hasHost && !h.http10 {
		return vNoHost
	}
	if h.absForm && h.hasHost && !equalFoldBytes(b[h.hostOff:h.hostEnd], b[h.authOff:h.authEnd]) {
		return vHostMismatch
	}
	if h.hasCL && lim.MaxBodyBytes >= 0 && h.cl > lim.MaxBodyBytes {
		return vBodyTooLarge
	}
	return nil
}
