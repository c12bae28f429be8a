package policy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ErrAmbiguousPath is wrapped by every error of NormalizePath: the path could
// be read in more than one way, so it is refused rather than guessed at.
var ErrAmbiguousPath = errors.New("ambiguous path")

func pathError(msg string) error { return fmt.Errorf("%w: %s", ErrAmbiguousPath, msg) }

var (
	errNotAbsolute   = pathError("does not start with '/'")
	errFragment      = pathError("contains '#'")
	errBadEscape     = pathError("malformed percent-encoding")
	errEncodedSlash  = pathError(`encoded '/' or '\'`)
	errBackslash     = pathError(`contains '\'`)
	errSemicolon     = pathError("contains ';' (path parameters are refused)")
	errControl       = pathError("contains a control character")
	errDoubleEncoded = pathError("percent-encoding is encoded again")
	errBadUTF8       = pathError("invalid UTF-8")
	errConfusable    = pathError(`contains a character that stands for '.', '/', '\', '%' or ';'`)
	errAboveRoot     = pathError("'..' climbs above the root")
	// Servers that keep empty segments let ".." remove one: "/a//../b" is
	// /a/b for them and /b for those that collapse "//" first.
	errEmptyThenDotDot = pathError("'..' follows an empty segment ('//')")
)

// NormalizePath returns the canonical form of a request path as received
// (r.URL.EscapedPath(), or the request target up to its query), or an error
// wrapping ErrAmbiguousPath. Policies match canonical paths, and proxies
// forward them, so that Ward and the application read a request alike.
//
// The canonical form:
//   - starts with '/' ("" becomes "/"); anything from a '?' on is the query
//     and is dropped;
//   - has every percent-escape decoded once, then re-encoded so that a
//     character has one spelling: the unreserved characters, the
//     sub-delimiters except ';', ':' and '@' appear raw, every other byte as
//     %XX with upper-case hex digits ("/%7Ea%2d%41" becomes "/~a-A",
//     "/a b" becomes "/a%20b");
//   - has empty segments dropped and "." and ".." segments resolved
//     (RFC 3986, 5.2.4): "/a/./b/../c//d" becomes "/a/c/d";
//   - keeps a trailing slash: "/a/" and "/a" are different paths;
//   - is case-sensitive: "/Admin" is not "/admin".
//
// These paths are refused: not starting with '/'; containing '#'; a '%' not
// followed by two hex digits; an encoded '/' or '\' (%2F, %5C); any '\'; any
// ';', raw or encoded (path parameters such as "/admin;x=y", which some
// servers strip and others keep, are refused rather than stripped); control
// characters, raw or encoded (%00, %0A, %7F); an escape that decodes to
// another escape ("%252e"); invalid UTF-8, overlong encodings included; a
// non-ASCII character whose compatibility form contains '.', '/', '\', '%' or
// ';' (full-width "．", "／", "％", the two-dot leader "‥"), or that looks
// like a slash ("∕", "⁄"); ".." segments that would climb above the root;
// and ".." after an empty segment ("/a//../b": /a/b to servers that keep
// empty segments, /b to those that drop them).
//
// A path that is already canonical is returned without allocating.
func NormalizePath(raw string) (string, error) {
	raw, _, _ = strings.Cut(raw, "?")
	switch {
	case raw == "":
		return "/", nil
	case raw[0] != '/':
		return "", errNotAbsolute
	case isCanonical(raw):
		return raw, nil
	}

	// Decode every escape once, refusing what could change the structure
	// of the path for a reader that decodes differently.
	dec := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case '#':
			return "", errFragment
		case '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return "", errBadEscape
			}
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
			if c == '/' || c == '\\' {
				return "", errEncodedSlash
			}
		}
		switch {
		case c == '\\':
			return "", errBackslash
		case c == ';':
			return "", errSemicolon
		case c < 0x20 || c == 0x7f:
			return "", errControl
		}
		dec = append(dec, c)
	}
	if !utf8.Valid(dec) {
		return "", errBadUTF8
	}
	for i := 0; i < len(dec); {
		if c := dec[i]; c < utf8.RuneSelf {
			if c == '%' && i+2 < len(dec) && isHex(dec[i+1]) && isHex(dec[i+2]) {
				return "", errDoubleEncoded
			}
			i++
			continue
		}
		p := norm.NFKC.Properties(dec[i:])
		if bytes.ContainsAny(p.Decomposition(), `./\%;`) || isSlashLike(dec[i:]) {
			return "", errConfusable
		}
		i += p.Size()
	}

	// Resolve segments and re-encode; only raw '/' separates segments.
	out := make([]byte, 0, len(dec)+len(dec)/2)
	segs := bytes.Split(dec[1:], []byte("/"))
	empty := false // an empty segment was dropped
	for i, seg := range segs {
		switch string(seg) {
		case "":
			empty = true
		case ".":
		case "..":
			j := bytes.LastIndexByte(out, '/')
			switch {
			case empty:
				return "", errEmptyThenDotDot
			case j < 0:
				return "", errAboveRoot
			}
			out = out[:j]
		default:
			out = append(out, '/')
			for _, c := range seg {
				if canonicalRaw[c] {
					out = append(out, c)
				} else {
					out = append(out, '%', hexDigits[c>>4], hexDigits[c&15])
				}
			}
			continue
		}
		if i == len(segs)-1 {
			out = append(out, '/') // the path ends with "/", "/." or "/.."
		}
	}
	return string(out), nil
}

// canonicalRaw marks the bytes that canonical paths hold unencoded: '/',
// unreserved characters, sub-delimiters but ';', ':' and '@'.
var canonicalRaw = func() (t [256]bool) {
	for _, c := range []byte("/-._~!$&'()*+,=:@") {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	return t
}()

// isCanonical reports whether p, which starts with '/', is its own
// canonical form: only raw canonical bytes, no empty, "." or ".." segment
// (but a final slash).
func isCanonical(p string) bool {
	for i := 0; i < len(p); i++ {
		if !canonicalRaw[p[i]] {
			return false
		}
		if p[i] == '/' {
			seg := p[i+1:]
			if j := strings.IndexByte(seg, '/'); j >= 0 {
				seg = seg[:j+1]
			}
			switch seg {
			case "/", ".", "./", "..", "../":
				return false
			}
		}
	}
	return true
}

// isSlashLike reports whether s starts with a character that looks like a
// slash without being one under compatibility normalization.
func isSlashLike(s []byte) bool {
	r, _ := utf8.DecodeRune(s)
	switch r {
	case '∕', '⁄', '⧸', '⧵', '⧹': // division and fraction slash, big solidus, reverse solidus operator, big reverse solidus
		return true
	}
	return false
}

const hexDigits = "0123456789ABCDEF"

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
