package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// maxCount bounds the count of a Rate so that interval arithmetic cannot
// overflow and typos such as "10000000000/s" are caught.
const maxCount = 1_000_000_000

// maxTolerance bounds Burst × Interval, the time a full burst takes to
// refill, so that theoretical arrival times cannot overflow.
const maxTolerance = 100 * 365 * 24 * time.Hour

// Rate is a number of events per period, such as 100 per second.
// The zero Rate is invalid.
type Rate struct {
	Count int64         // events allowed per Per; at least 1
	Per   time.Duration // the period; positive
}

// ParseRate parses a rate written as COUNT/PERIOD, where PERIOD is one of
// the units s, m, h, d (second, minute, hour, day) or a Go duration such as
// 30s, 1m30s or 500ms. Examples: "100/s", "10/m", "5000/h", "20/10s".
func ParseRate(s string) (Rate, error) {
	countStr, perStr, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("ratelimit: invalid rate %q: want COUNT/PERIOD such as \"100/s\" or \"10/m\"", s)
	}
	count, err := strconv.ParseInt(countStr, 10, 64)
	if err != nil || count < 1 || countStr[0] == '+' {
		return Rate{}, fmt.Errorf("ratelimit: invalid rate %q: count %q is not a positive integer", s, countStr)
	}
	if count > maxCount {
		return Rate{}, fmt.Errorf("ratelimit: invalid rate %q: count %d is more than %d", s, count, maxCount)
	}
	per, err := parsePeriod(perStr)
	if err != nil {
		return Rate{}, fmt.Errorf("ratelimit: invalid rate %q: %w", s, err)
	}
	r := Rate{Count: count, Per: per}
	if r.Interval() <= 0 {
		return Rate{}, fmt.Errorf("ratelimit: invalid rate %q: more than one event per nanosecond", s)
	}
	return r, nil
}

func parsePeriod(s string) (time.Duration, error) {
	switch s {
	case "s":
		return time.Second, nil
	case "m":
		return time.Minute, nil
	case "h":
		return time.Hour, nil
	case "d":
		return 24 * time.Hour, nil
	case "":
		return 0, errors.New("missing period after \"/\" (want s, m, h, d or a duration such as 30s)")
	}
	d, err := time.ParseDuration(s)
	if err != nil || s[0] < '0' || s[0] > '9' {
		return 0, fmt.Errorf("period %q is not s, m, h, d or a duration such as 30s", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("period %q is not positive", s)
	}
	return d, nil
}

// Interval is the emission interval: the time one event costs.
// It is zero for an invalid Rate.
func (r Rate) Interval() time.Duration {
	if r.Count <= 0 || r.Per <= 0 {
		return 0
	}
	return r.Per / time.Duration(r.Count)
}

// String formats r so that ParseRate reads it back.
func (r Rate) String() string {
	c := strconv.FormatInt(r.Count, 10)
	switch r.Per {
	case time.Second:
		return c + "/s"
	case time.Minute:
		return c + "/m"
	case time.Hour:
		return c + "/h"
	case 24 * time.Hour:
		return c + "/d"
	}
	return c + "/" + r.Per.String()
}

// MarshalText implements encoding.TextMarshaler.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler using ParseRate, so a
// Rate can sit directly in a decoded configuration struct.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Limit is a rate with a burst: up to Burst requests may be made at once,
// after which requests are allowed at Rate.
type Limit struct {
	Rate  Rate
	Burst int // at least 1
}

// ErrInvalidLimit is returned (wrapped) by Allow for a Limit that fails Validate.
var ErrInvalidLimit = errors.New("ratelimit: invalid limit")

// Validate reports whether l can be enforced.
func (l Limit) Validate() error {
	if l.Rate.Interval() <= 0 {
		return fmt.Errorf("%w: rate %q is not positive", ErrInvalidLimit, l.Rate.String())
	}
	if l.Burst < 1 {
		return fmt.Errorf("%w: burst %d is less than 1", ErrInvalidLimit, l.Burst)
	}
	if l.Burst > maxCount {
		return fmt.Errorf("%w: burst %d is more than %d", ErrInvalidLimit, l.Burst, maxCount)
	}
	if int64(l.Burst) > int64(maxTolerance/l.Rate.Interval()) {
		return fmt.Errorf("%w: burst %d of rate %s takes more than %v to refill", ErrInvalidLimit, l.Burst, l.Rate, maxTolerance)
	}
	return nil
}

// Result is the outcome of one Allow call.
type Result struct {
	// Allowed reports whether the request may proceed.
	Allowed bool
	// Remaining is how many more requests would be allowed right now.
	Remaining int
	// RetryAfter is how long to wait until a request would be allowed; zero
	// when Allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to its full burst.
	ResetAfter time.Duration
}
