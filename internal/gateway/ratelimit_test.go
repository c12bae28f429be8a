package gateway_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/wardsec/ward/internal/gateway"
	"github.com/wardsec/ward/internal/ratelimit"
	"github.com/wardsec/ward/internal/ratelimit/redistest"
)

// TestRateLimiterDownFailsClosed (issue 19 item 6): when the Redis that
// counts a route's limit stops, the gateway refuses the route's requests
// with 503 ratelimit_unavailable and the service sees none of them; a
// route without a limit is still served.
func TestRateLimiterDownFailsClosed(t *testing.T) {
	rs := redistest.Start(t)
	client := redis.NewClient(&redis.Options{
		Addr: rs.Addr(),
		// No maintenance notifications: a plain redis-server sends none,
		// and their goroutine outlives Close.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		MaxRetries:               -1,
	})
	t.Cleanup(func() { _ = client.Close() })
	e := newEdgeWith(t, func(c *gateway.Config) {
		c.Limiter = ratelimit.NewRedis(client, ratelimit.RedisOptions{Prefix: "ward:test:" + t.Name() + ":"})
	})
	resp := e.do("GET", "/limited", e.apiKey, "", nil)
	if resp.StatusCode != 200 || resp.Header.Get("RateLimit-Remaining") != "2" {
		t.Fatalf("with Redis up: %d, RateLimit-Remaining %q (%s)", resp.StatusCode, resp.Header.Get("RateLimit-Remaining"), bodyOf(resp))
	}

	rs.Stop()
	before := e.catalog.app.count()
	for range 2 {
		resp = e.do("GET", "/limited", e.apiKey, "", nil)
		e.expectRefused(t, resp, refusal{503, gateway.ReasonLimiterDown}, before, e.catalog.app)
	}
	if resp := e.do("GET", "/catalog/items", "", "", nil); resp.StatusCode != 200 {
		t.Fatalf("a route without a limit: %d %s", resp.StatusCode, bodyOf(resp))
	}
}
