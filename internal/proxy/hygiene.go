package proxy

import (
	"net/http"
	"slices"
)

// The rules for header field names are the same whatever the protocol:
// the guard applies them to the bytes of an HTTP/1.x head, [Guard.Check] to
// a request net/http parsed from HTTP/2 frames, and [StripWard] and
// [RestoreWard] to what a proxy forwards.

// wardPrefix starts every header Ward owns, in its folded spelling: lower
// case, '-' for '_'.
const wardPrefix = "x-ward-"

// WardOwned reports whether name is one of Ward's own headers in any
// spelling: "X-Ward-" in any letter case, and with '_' standing for any of
// its '-' ("x_ward_user", "X-Ward_User"), the way CGI, WSGI and PHP stacks
// fold names into HTTP_X_WARD_USER.
func WardOwned[T string | []byte](name T) bool {
	if len(name) < len(wardPrefix) {
		return false
	}
	for i := range len(wardPrefix) {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != wardPrefix[i] {
			return false
		}
	}
	return true
}

// StripWard removes from h every header Ward owns, in every spelling. A
// proxy calls it on what arrived before anything (a condition, the app)
// reads the headers, and only then sets its own.
func StripWard(h http.Header) {
	for k := range h {
		if WardOwned(k) {
			delete(h, k)
		}
	}
}

// RestoreWard copies to out every header Ward owns that in carries. Ward's
// reverse proxies call it from httputil.ReverseProxy's Rewrite, which runs
// after the hop-by-hop headers were removed from out: a client's
// "Connection: X-Ward-Identity" then cannot keep Ward's headers from the
// next hop. in must have been through StripWard before Ward set its own.
func RestoreWard(out, in http.Header) {
	for k, vs := range in {
		if WardOwned(k) {
			out[k] = slices.Clone(vs)
		}
	}
}

// fieldNameViolation is the rule for a header field name: a token of RFC
// 9110 without '_' (see nameChar).
func fieldNameViolation[T string | []byte](name T) *violation {
	if len(name) == 0 {
		return vEmptyName
	}
	for i := range len(name) {
		if !nameChar[name[i]] {
			return nameViolation([]byte(name))
		}
	}
	return nil
}

func validValueString(v string) bool {
	for i := range len(v) {
		if !valueChar[v[i]] {
			return false
		}
	}
	return true
}

// RequestError is a request refused by [Guard.Check]: the status to answer
// and a constant reason that names the rule, safe to send to the client.
type RequestError struct {
	Status int
	Reason string
}

func (e *RequestError) Error() string { return "proxy: " + e.Reason }

func requestError(v *violation) *RequestError {
	return &RequestError{Status: v.status, Reason: v.reason}
}

// Check applies to a request that net/http parsed itself, from HTTP/2
// frames, the rules and limits the guard applies to an HTTP/1.x head, so
// that every way in meets the same hygiene: field names are tokens without
// '_' (400), values have no control characters (400), Host is host[:port]
// (400), the target is an origin-form path with valid percent-encoding or
// "*" for OPTIONS (400), at most MaxURLBytes long (414); at most MaxHeaders
// fields and MaxHeaderBytes in all, counted as the HTTP/1.1 head would be
// (431). HTTP/2 frames the body itself: there is no CL/TE ambiguity to
// check. An HTTP/1.x request passed the guard on its connection and gets
// nil at once.
//
// The handler answers a non-nil result with its Status before any route,
// authentication or policy runs.
func (g *Guard) Check(r *http.Request) *RequestError {
	if r.ProtoMajor < 2 {
		return nil
	}
	g.init()
	lim := &g.lim
	target := r.RequestURI
	switch {
	case len(r.Method)+len(target)+len("  HTTP/1.1") > lim.MaxURLBytes+requestLineSlack:
		return requestError(vLineTooLong) // as the guard says of the request line
	case len(target) > lim.MaxURLBytes:
		return requestError(vTargetTooLong)
	case len(target) > 0 && target[0] == '/':
		if v := checkPathQuery(target); v != nil {
			return requestError(v)
		}
	case target == "*" && r.Method == http.MethodOptions:
	default:
		return requestError(vTargetForm)
	}
	if r.Host == "" {
		return requestError(vNoHost)
	}
	if !validAuthority(r.Host, false) {
		return requestError(vBadHost)
	}
	// The size of the equivalent HTTP/1.1 head: request line, Host, fields,
	// the CRLFs.
	fields, size := 1, len(r.Method)+len(target)+len(" HTTP/1.1\r\n")+len("Host: \r\n")+len(r.Host)+2
	for k, vs := range r.Header {
		if v := fieldNameViolation(k); v != nil {
			return requestError(v)
		}
		for _, v := range vs {
			if !validValueString(v) {
				return requestError(vValueChar)
			}
			size += len(k) + len(": \r\n") + len(v)
		}
		fields += len(vs)
	}
	if fields > lim.MaxHeaders {
		return requestError(vTooMany)
	}
	if size > lim.MaxHeaderBytes {
		return requestError(vTooLarge)
	}
	return nil
}
