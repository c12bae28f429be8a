package ratelimit

import (
	"context"
	"time"
)

// Limiter decides whether the caller named by key may make one more request
// under l. Implementations are safe for concurrent use.
type Limiter interface {
	Allow(ctx context.Context, key string, l Limit) (Result, error)
}

var (
	_ Limiter = (*Local)(nil)
	_ Limiter = (*Redis)(nil)
)

// gcra is one GCRA decision. Times are in any common unit (nanoseconds for
// Local); tat is the key's stored theoretical arrival time, or anything not
// after now for a key without state. It returns the TAT to store when the
// request is allowed. The Lua script in redis.go is the same computation.
func gcra(now, tat, interval int64, burst int) (newTAT int64, allowed bool, remaining int, retryAfter, resetAfter int64) {
	if tat < now {
		tat = now
	}
	newTAT = tat + interval
	allowAt := newTAT - int64(burst)*interval
	if now < allowAt {
		return tat, false, 0, allowAt - now, tat - now
	}
	return newTAT, true, int((now - allowAt) / interval), 0, newTAT - now
}

func result(allowed bool, remaining int, retryAfter, resetAfter, unit int64) Result {
	return Result{
		Allowed:    allowed,
		Remaining:  remaining,
		RetryAfter: time.Duration(retryAfter * unit),
		ResetAfter: time.Duration(resetAfter * unit),
	}
}
