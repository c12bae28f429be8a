package vault

import (
	"fmt"
	"strings"
)

// Limits of the path grammar.
const (
	MaxPathBytes    = 256
	MaxPathSegments = 8
	maxSegmentBytes = 63
)

// PathError says why a secret path is refused.
type PathError struct {
	Path string
	Msg  string
}

func (e *PathError) Error() string { return fmt.Sprintf("secret path %q: %s", e.Path, e.Msg) }

// CheckPath enforces the grammar of secret paths: one to eight segments
// separated by '/', each of 1 to 63 characters among lowercase letters,
// digits, '-', '_' and '.', starting and ending with a letter or digit, at
// most 256 bytes in all. So no empty segment, no leading or trailing '/',
// no "." or ".." and nothing a shell, a URL or a log line would read
// otherwise. The first segment names the service that owns the secret
// ("orders/db/password" belongs to orders).
func CheckPath(p string) error {
	switch {
	case p == "":
		return &PathError{p, "empty"}
	case len(p) > MaxPathBytes:
		return &PathError{p, fmt.Sprintf("longer than %d bytes", MaxPathBytes)}
	case strings.HasPrefix(p, "/"):
		return &PathError{p, "must not start with '/' (write orders/db/password)"}
	case strings.HasSuffix(p, "/"):
		return &PathError{p, "must not end with '/'"}
	}
	segs := strings.Split(p, "/")
	if len(segs) > MaxPathSegments {
		return &PathError{p, fmt.Sprintf("more than %d segments", MaxPathSegments)}
	}
	for _, s := range segs {
		if err := checkSegment(s); err != "" {
			return &PathError{p, err}
		}
	}
	return nil
}

func checkSegment(s string) string {
	switch {
	case s == "":
		return "empty segment (\"//\")"
	case s == "." || s == "..":
		return fmt.Sprintf("segment %q is not allowed", s)
	case len(s) > maxSegmentBytes:
		return fmt.Sprintf("segment longer than %d characters", maxSegmentBytes)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		switch {
		case alnum:
		case c == '-' || c == '_' || c == '.':
			if i == 0 || i == len(s)-1 {
				return fmt.Sprintf("segment %q must start and end with a lowercase letter or digit", s)
			}
		default:
			return fmt.Sprintf("character %q is not allowed (use lowercase letters, digits, '-', '_', '.')", rune(c))
		}
	}
	return ""
}

// Owner returns the service that owns a valid path: its first segment.
func Owner(p string) string {
	owner, _, _ := strings.Cut(p, "/")
	return owner
}

// CheckPattern checks a path pattern of a SecretPolicy: a path whose
// segments may also be "*" (exactly one segment) and whose last segment
// may be "**" (one or more segments).
func CheckPattern(p string) error {
	switch {
	case p == "":
		return &PathError{p, "empty pattern"}
	case strings.HasPrefix(p, "/"):
		return &PathError{p, "must not start with '/' (write orders/db/password)"}
	}
	segs := strings.Split(p, "/")
	if len(segs) > MaxPathSegments || len(p) > MaxPathBytes {
		return &PathError{p, "pattern too long"}
	}
	for i, s := range segs {
		switch {
		case s == "*":
		case s == "**":
			if i != len(segs)-1 {
				return &PathError{p, `"**" is only allowed as the last segment`}
			}
		default:
			if err := checkSegment(s); err != "" {
				return &PathError{p, err + ` (or "*" for one segment, "**" last for any below)`}
			}
		}
	}
	return nil
}

// MatchPattern reports whether the valid path p matches the valid pattern.
func MatchPattern(pattern, p string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(p, "/")
	for i, s := range ps {
		if s == "**" {
			return len(xs) > i
		}
		if i >= len(xs) || s != "*" && s != xs[i] {
			return false
		}
	}
	return len(ps) == len(xs)
}

// PatternOwner returns the service that owns every path a pattern matches,
// or "" when the first segment is a wildcard.
func PatternOwner(pattern string) string {
	owner := Owner(pattern)
	if owner == "*" || owner == "**" {
		return ""
	}
	return owner
}

// MatchID reports whether a SPIFFE ID path ("/svc/orders") matches a
// reader pattern ("svc/orders", "svc/*"): segment by segment, "*"
// matching exactly one.
func MatchID(pattern, idPath string) bool {
	ps := strings.Split(pattern, "/")
	xs := strings.Split(strings.TrimPrefix(idPath, "/"), "/")
	if len(ps) != len(xs) || !strings.HasPrefix(idPath, "/") {
		return false
	}
	for i, s := range ps {
		if s != "*" && s != xs[i] || xs[i] == "" {
			return false
		}
	}
	return true
}
