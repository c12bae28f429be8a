package ratelimit

import (
	"net/http"
	"strconv"
	"time"
)

// Headers sets the RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset
// headers of the IETF RateLimit header fields draft on w, and Retry-After
// when r denied the request. Durations are whole seconds, rounded up so a
// client that waits as told is not denied again; a denial always says at
// least one second. RateLimit-Limit is the burst, the most requests that
// can be made at once.
func Headers(w http.Header, l Limit, r Result) {
	w.Set("RateLimit-Limit", strconv.Itoa(l.Burst))
	w.Set("RateLimit-Remaining", strconv.Itoa(max(r.Remaining, 0)))
	w.Set("RateLimit-Reset", strconv.FormatInt(ceilSeconds(r.ResetAfter), 10))
	if !r.Allowed {
		w.Set("Retry-After", strconv.FormatInt(max(ceilSeconds(r.RetryAfter), 1), 10))
	} else {
		w.Del("Retry-After")
	}
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
