// Package retry holds the two pieces every retry loop in Ward uses: a
// jittered exponential backoff and a sleep that ends with its context.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff returns the delay before retry number attempt (from 1): base
// doubled per attempt up to ceiling, then jittered into [d/2, d] so that
// many clients failing together do not retry together. base is at least
// 10ms and ceiling at least base.
func Backoff(attempt int, base, ceiling time.Duration) time.Duration {
	base = max(base, 10*time.Millisecond)
	ceiling = max(ceiling, base)
	d := ceiling
	if attempt >= 1 && attempt < 32 && base<<(attempt-1) < ceiling {
		d = base << (attempt - 1)
	}
	return d/2 + rand.N(d/2+1) //nolint:gosec // jitter, not a secret
}

// Sleep waits for d or until ctx ends, reporting whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
