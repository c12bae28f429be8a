package flows

// Path templates: what bounds the paths a table counts.
const (
	// maxSegments is how many segments a template keeps; the rest of a
	// longer path becomes RestSegment.
	maxSegments = 8
	// maxTemplate bounds a template's length; a longer one ends with
	// RestSegment.
	maxTemplate = 256
	// RestSegment stands for the segments a template left out.
	RestSegment = "{rest}"
	// longSegment is the length from which any segment counts as an
	// identifier (tokens, slugs with hashes).
	longSegment = 32
)

// Template returns the template of an escaped path: each segment that
// looks like an identifier becomes {id}; past maxSegments segments or
// maxTemplate bytes, the rest becomes {rest}. "/orders/123/items" and
// "/orders/9f1c.../items" are both "/orders/{id}/items".
func Template(path string) string { return string(templateInto(nil, path)) }

// templateInto appends the template of path to b.
func templateInto(b []byte, path string) []byte {
	start := len(b)
	if path == "" || path[0] != '/' {
		b = append(b, '/')
	}
	segs := 0
	for i := 0; i < len(path); {
		if path[i] == '/' {
			i++
			if len(b)-start >= maxTemplate {
				return append(append(b, '/'), RestSegment...)
			}
			b = append(b, '/')
			continue
		}
		j := i
		for j < len(path) && path[j] != '/' {
			j++
		}
		seg := path[i:j]
		segs++
		switch {
		case segs > maxSegments:
			return append(b, RestSegment...)
		case isID(seg):
			seg = IDSegment
		}
		if len(b)-start+len(seg) > maxTemplate {
			return append(b, RestSegment...)
		}
		b = append(b, seg...)
		i = j
	}
	return b
}

// isID reports whether a path segment looks like an identifier: digits,
// a UUID, 16 or more hex digits with at least one decimal digit, or
// longSegment bytes or more of anything.
func isID(s string) bool {
	if len(s) == 0 {
		return false
	}
	if len(s) >= longSegment {
		return true
	}
	digits, hex := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
			hex++
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			hex++
		case c == '-' && len(s) == 36 && (i == 8 || i == 13 || i == 18 || i == 23):
			hex++
		}
	}
	switch {
	case digits == len(s):
		return true
	case len(s) == 36 && hex == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-':
		return true
	case len(s) >= 16 && hex == len(s) && digits > 0:
		return true
	}
	return false
}
