package resource

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultBodyLimit is the largest request body a Route or Service accepts
// when its limits say nothing (like nginx's client_max_body_size).
const DefaultBodyLimit = 1 << 20

// MaxBodyLimit is the largest body limit a resource may set.
const MaxBodyLimit = 1 << 30

// Limits bound what one request may send to a Route (at the gateway) or a
// Service (at its sidecar).
type Limits struct {
	// Body is the largest request body, as a size such as 64KiB, 1MiB or
	// 4MiB (units B, KiB, MiB, GiB; a bare number is bytes). A larger one
	// is refused with 413. Empty: 1MiB.
	Body string `yaml:"body,omitempty"`
}

// BodyBytes is the body limit in bytes, the default when unset. The value
// was validated when the resource was parsed.
func (l Limits) BodyBytes() int64 {
	if l.Body == "" {
		return DefaultBodyLimit
	}
	n, err := ParseSize(l.Body)
	if err != nil {
		return DefaultBodyLimit
	}
	return n
}

func (l Limits) validate(v validator) {
	if l.Body == "" {
		return
	}
	n, err := ParseSize(l.Body)
	switch {
	case err != nil:
		v.errorf("spec.limits.body", "%v", err)
	case n < 1 || n > MaxBodyLimit:
		v.errorf("spec.limits.body", "body limit %s out of range 1B-1GiB", l.Body)
	}
}

// ParseSize reads a size in bytes: a whole number followed by an optional
// unit B, KiB, MiB or GiB ("512KiB", "1MiB", "100").
func ParseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || num == "" || num[0] == '+' || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: want a whole number with an optional unit B, KiB, MiB or GiB, such as 1MiB", s)
	}
	return n * mult, nil
}
