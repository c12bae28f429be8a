package proxy

import (
	"encoding/binary"
	"math"
	"net/netip"
)

// Byte classes of RFC 9110/9112 and RFC 3986, as lookup tables so that the
// scanners do one load per byte.
var (
	// tokenChar: tchar of RFC 9110 §5.6.2, for methods.
	tokenChar = byteTable(isTchar)
	// nameChar: tchar without '_'. Ward rejects underscores in field names
	// because some servers (CGI, nginx, WSGI) fold '_' and '-' together,
	// which lets "X_Ward_Peer_Id" alias "X-Ward-Peer-Id" behind the proxy.
	nameChar = byteTable(func(c byte) bool { return isTchar(c) && c != '_' })
	// valueChar: field-vchar, SP and HTAB (RFC 9110 §5.5), obs-text included.
	valueChar = byteTable(func(c byte) bool { return c == '\t' || c >= 0x20 && c != 0x7f })
	// targetChar: what a request target may contain: visible ASCII
	// without '#' (no fragment in a request). Non-ASCII must be
	// percent-encoded, which clients do.
	targetChar = byteTable(func(c byte) bool { return c > 0x20 && c < 0x7f && c != '#' })
	// regNameChar: the host names Ward accepts: unreserved characters of
	// RFC 3986, no percent-encoding and no sub-delims.
	regNameChar = byteTable(func(c byte) bool {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~'
	})
	// extChar: bytes allowed in a chunk extension (tokens, '=', quoted
	// strings): anything but controls.
	extChar = byteTable(func(c byte) bool { return c == '\t' || c >= 0x20 && c != 0x7f })
)

func byteTable(f func(byte) bool) (t [256]bool) {
	for i := range t {
		t[i] = f(byte(i))
	}
	return t
}

func isTchar(c byte) bool {
	if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// unhex returns the value of a hex digit, or 0xff.
func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0xff
}

// equalFold reports whether b equals the lower-case ASCII string s, ignoring
// ASCII case in b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// equalFoldBytes compares two byte strings ignoring ASCII case.
func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, s string) bool {
	return len(b) >= len(s) && equalFold(b[:len(s)], s)
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// trimOWS returns v without leading and trailing SP/HTAB, and the number of
// bytes cut from its front.
func trimOWS(v []byte) ([]byte, int) {
	i := 0
	for i < len(v) && isOWS(v[i]) {
		i++
	}
	j := len(v)
	for j > i && isOWS(v[j-1]) {
		j--
	}
	return v[i:j], i
}

// parseDecimal parses a non-empty run of ASCII digits into an int64.
func parseDecimal[T string | []byte](b T) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for i := range len(b) {
		c := b[i]
		if !isDigit(c) {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// checkPathQuery validates the path and query of a request target: only
// targetChar bytes, and every '%' starts a two-digit hex escape (what
// url.ParseRequestURI demands of the path; Ward demands it of the query too
// so that no two parsers decode it differently).
func checkPathQuery[T string | []byte](t T) *violation {
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !targetChar[c] {
			return vTargetChar
		}
		if c == '%' {
			if i+2 >= len(t) || unhex(t[i+1]) == 0xff || unhex(t[i+2]) == 0xff {
				return vTargetEscape
			}
			i += 2
		}
	}
	return nil
}

// validAuthority reports whether a is host[:port] with host a reg-name of
// regNameChar bytes or a bracketed IPv6 address (no zone), and port 1-5
// digits up to 65535. userinfo is not allowed. requirePort is for CONNECT.
func validAuthority[T string | []byte](a T, requirePort bool) bool {
	if len(a) == 0 {
		return false
	}
	end := 0
	if a[0] == '[' {
		for end = 1; end < len(a) && a[end] != ']'; end++ {
			c := a[end]
			if unhex(c) == 0xff && c != ':' && c != '.' {
				return false
			}
		}
		if end == len(a) || end == 1 {
			return false
		}
		addr, err := netip.ParseAddr(string(a[1:end]))
		if err != nil || addr.Is4() {
			return false
		}
		end++ // past ']'
	} else {
		for end < len(a) && a[end] != ':' {
			if !regNameChar[a[end]] {
				return false
			}
			end++
		}
		if end == 0 {
			return false
		}
	}
	port := a[end:]
	if len(port) == 0 {
		return !requirePort
	}
	if port[0] != ':' || len(port) < 2 || len(port) > 6 {
		return false
	}
	n, ok := parseDecimal(port[1:])
	return ok && n <= 65535
}

// validValue reports whether every byte of v is a valueChar. It looks at
// eight bytes at a time: header values are most of a head.
func validValue(v []byte) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for len(v) >= 8 {
		x := binary.LittleEndian.Uint64(v)
		// Exact tests for "some byte < 0x20" and "some byte == 0x7f":
		// a borrow only crosses bytes above a byte that matched.
		below := (x - 0x20*ones) & ^x & highs
		y := x ^ 0x7f*ones
		del := (y - ones) & ^y & highs
		if below|del != 0 {
			for _, c := range v[:8] { // a tab, or a bad byte
				if !valueChar[c] {
					return false
				}
			}
		}
		v = v[8:]
	}
	for _, c := range v {
		if !valueChar[c] {
			return false
		}
	}
	return true
}
