package ratelimit

import (
	"net/http"
	"testing"
	"time"
)

func TestHeaders(t *testing.T) {
	lim := Limit{Rate: Rate{10, time.Second}, Burst: 20}
	tests := []struct {
		name string
		r    Result
		want map[string]string // "" means absent
	}{
		{"allowed", Result{Allowed: true, Remaining: 19, ResetAfter: 100 * time.Millisecond},
			map[string]string{"RateLimit-Limit": "20", "RateLimit-Remaining": "19", "RateLimit-Reset": "1", "Retry-After": ""}},
		{"allowed exact seconds", Result{Allowed: true, Remaining: 0, ResetAfter: 2 * time.Second},
			map[string]string{"RateLimit-Remaining": "0", "RateLimit-Reset": "2", "Retry-After": ""}},
		{"denied rounds up", Result{Allowed: false, RetryAfter: 1500 * time.Millisecond, ResetAfter: 2001 * time.Millisecond},
			map[string]string{"RateLimit-Remaining": "0", "RateLimit-Reset": "3", "Retry-After": "2"}},
		{"denied sub-second says 1", Result{Allowed: false, RetryAfter: time.Millisecond, ResetAfter: 2 * time.Second},
			map[string]string{"Retry-After": "1", "RateLimit-Reset": "2"}},
		{"zero reset", Result{Allowed: true, Remaining: 5},
			map[string]string{"RateLimit-Reset": "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			h.Set("Retry-After", "stale") // must be removed when allowed
			Headers(h, lim, tt.r)
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}
