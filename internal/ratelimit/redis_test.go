package ratelimit

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/wardsec/ward/internal/ratelimit/redistest"
)

// newRedisClient returns a client of the test binary's redis-server, closed
// when tb ends.
func newRedisClient(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(clientOptions(redistest.Addr(tb)))
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// clientOptions disables go-redis's maintenance notifications, whose
// circuit-breaker goroutine outlives Client.Close (go-redis v9.23) and
// which a plain redis-server does not send anyway.
func clientOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:                     addr,
		PoolSize:                 16,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// testPrefix isolates a test's keys from every other test's.
func testPrefix(tb testing.TB) string {
	return "ward:test:" + tb.Name() + ":" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
}

func TestRedisGCRA(t *testing.T) {
	ctx := context.Background()
	c := newRedisClient(t)
	prefix := testPrefix(t)
	rl := NewRedis(c, RedisOptions{Prefix: prefix})
	lim := Limit{Rate: mustRate(t, "1/m"), Burst: 3}

	// Slow rate: the few milliseconds between calls do not refill anything,
	// so the results are exact up to that slack.
	const slack = time.Second
	steps := []struct {
		allowed   bool
		remaining int
		retry     time.Duration
		reset     time.Duration
	}{
		{true, 2, 0, time.Minute},
		{true, 1, 0, 2 * time.Minute},
		{true, 0, 0, 3 * time.Minute},
		{false, 0, time.Minute, 3 * time.Minute},
		{false, 0, time.Minute, 3 * time.Minute},
	}
	for i, st := range steps {
		got, err := rl.Allow(ctx, "k", lim)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got.Allowed != st.allowed || got.Remaining != st.remaining ||
			!near(got.RetryAfter, st.retry, slack) || !near(got.ResetAfter, st.reset, slack) {
			t.Errorf("step %d: got %+v, want %+v (±%v)", i, got, st, slack)
		}
		if st.allowed && got.RetryAfter != 0 {
			t.Errorf("step %d: allowed with RetryAfter %v", i, got.RetryAfter)
		}
	}

	// The key is stored under the prefix and expires when fully replenished.
	pttl, err := c.PTTL(ctx, prefix+"k").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !near(pttl, 3*time.Minute, slack) {
		t.Errorf("PTTL = %v, want about 3m", pttl)
	}
	if n, _ := c.Exists(ctx, "k").Result(); n != 0 {
		t.Errorf("unprefixed key exists")
	}

	// Another key is independent.
	if r, err := rl.Allow(ctx, "other", lim); err != nil || !r.Allowed || r.Remaining != 2 {
		t.Errorf("other key: %+v, %v", r, err)
	}
}

// TestRedisRefill checks the steady rate on the server's clock.
func TestRedisRefill(t *testing.T) {
	ctx := context.Background()
	rl := NewRedis(newRedisClient(t), RedisOptions{Prefix: testPrefix(t)})
	lim := Limit{Rate: mustRate(t, "10/s"), Burst: 1}
	if r, err := rl.Allow(ctx, "k", lim); err != nil || !r.Allowed {
		t.Fatalf("first: %+v, %v", r, err)
	}
	r, err := rl.Allow(ctx, "k", lim)
	if err != nil || r.Allowed {
		t.Fatalf("second: %+v, %v; want denied", r, err)
	}
	if r.RetryAfter <= 0 || r.RetryAfter > 100*time.Millisecond {
		t.Fatalf("RetryAfter = %v, want in (0, 100ms]", r.RetryAfter)
	}
	time.Sleep(r.RetryAfter)
	if r, err := rl.Allow(ctx, "k", lim); err != nil || !r.Allowed {
		t.Fatalf("after waiting RetryAfter: %+v, %v; want allowed", r, err)
	}
}

// TestRedisScriptFlushed: EVALSHA of an unknown script falls back to EVAL,
// as after a Redis restart or failover.
func TestRedisScriptFlushed(t *testing.T) {
	ctx := context.Background()
	c := newRedisClient(t)
	rl := NewRedis(c, RedisOptions{Prefix: testPrefix(t)})
	lim := Limit{Rate: mustRate(t, "1/h"), Burst: 2}
	if _, err := rl.Allow(ctx, "k", lim); err != nil {
		t.Fatal(err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r, err := rl.Allow(ctx, "k", lim)
	if err != nil {
		t.Fatalf("Allow after SCRIPT FLUSH: %v", err)
	}
	if !r.Allowed || r.Remaining != 0 {
		t.Fatalf("after SCRIPT FLUSH: %+v, want allowed with 0 remaining (state kept)", r)
	}
}

// TestRedisUnavailable: errors are returned, not turned into a decision.
func TestRedisUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens here now
	opts := clientOptions(addr)
	opts.MaxRetries = -1
	opts.DialTimeout = time.Second
	c := redis.NewClient(opts)
	defer c.Close()
	rl := NewRedis(c, RedisOptions{})
	r, err := rl.Allow(context.Background(), "k", Limit{Rate: mustRate(t, "1/s"), Burst: 1})
	if err == nil {
		t.Fatalf("Allow against a dead server = %+v, nil; want an error", r)
	}
	if r != (Result{}) {
		t.Errorf("Result with error = %+v, want zero", r)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("error %v does not wrap the network error", err)
	}
}

func TestRedisInvalidLimit(t *testing.T) {
	c := redis.NewClient(clientOptions("127.0.0.1:1"))
	defer c.Close()
	rl := NewRedis(c, RedisOptions{})
	for _, lim := range []Limit{
		{Rate: mustRate(t, "1/s"), Burst: 0},
		{Rate: mustRate(t, "10000000/s"), Burst: 1}, // finer than 1µs
	} {
		if _, err := rl.Allow(context.Background(), "k", lim); !errors.Is(err, ErrInvalidLimit) {
			t.Errorf("Allow(%+v) err = %v, want ErrInvalidLimit", lim, err)
		}
	}
}

// hammer sends n requests for key from each of 8 goroutines per limiter,
// all at once, and returns how many were allowed.
func hammer(t *testing.T, limiters []Limiter, key string, lim Limit, n int) int64 {
	t.Helper()
	var allowed, errs atomic.Int64
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, l := range limiters {
		for range 8 {
			wg.Go(func() {
				for range n {
					r, err := l.Allow(ctx, key, lim)
					if err != nil {
						errs.Add(1)
						continue
					}
					if r.Allowed {
						allowed.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	if n := errs.Load(); n > 0 {
		t.Fatalf("%d errors while hammering", n)
	}
	return allowed.Load()
}

// TestRedisSharedAccuracy is the reason Redis exists: two independent
// limiters with their own connections, like two gateway replicas, hammer
// one key concurrently and together allow exactly the burst. The rate is
// one an hour, so no refill happens during the test and the count does not
// depend on how fast this machine is. Two Local limiters in the same
// situation allow twice as much.
func TestRedisSharedAccuracy(t *testing.T) {
	lim := Limit{Rate: mustRate(t, "1/h"), Burst: 500}
	prefix := testPrefix(t)
	gateways := []Limiter{
		NewRedis(newRedisClient(t), RedisOptions{Prefix: prefix}),
		NewRedis(newRedisClient(t), RedisOptions{Prefix: prefix}),
	}
	// 2 limiters × 8 goroutines × 100 requests = 1,600 for a burst of 500.
	if got := hammer(t, gateways, "apikey:shared", lim, 100); got != int64(lim.Burst) {
		t.Errorf("two Redis limiters allowed %d of 1600 concurrent requests, want exactly %d", got, lim.Burst)
	}
	locals := []Limiter{NewLocal(LocalOptions{}), NewLocal(LocalOptions{})}
	if got := hammer(t, locals, "apikey:shared", lim, 100); got != 2*int64(lim.Burst) {
		t.Errorf("two Local limiters allowed %d, want %d: each counts alone", got, 2*lim.Burst)
	}
}

func near(got, want, tol time.Duration) bool {
	return got >= want-tol && got <= want+tol
}

func BenchmarkRedisAllow(b *testing.B) {
	c := newRedisClient(b)
	rl := NewRedis(c, RedisOptions{Prefix: testPrefix(b)})
	lim := Limit{Rate: Rate{1_000_000, time.Second}, Burst: 1000}
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rl.Allow(ctx, "apikey:0123456789abcdef", lim); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := rl.Allow(ctx, "apikey:0123456789abcdef", lim); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
