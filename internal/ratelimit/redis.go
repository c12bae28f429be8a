package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix is prepended to every key a Redis limiter stores.
const DefaultRedisPrefix = "ward:rl:"

// gcraScript is gcra in Lua, in microseconds (Lua numbers are doubles, exact
// to 2^53: microseconds since 1970 fit, nanoseconds would not). It reads the
// server's clock with TIME, so the clocks of the gateways never matter, and
// stores the new TAT with an expiry at the moment it is no longer needed.
//
// KEYS[1] = key, ARGV[1] = emission interval in µs, ARGV[2] = burst.
// Returns {allowed (0|1), remaining, retry_after µs, reset_after µs}.
const gcraScript = `
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
local reset = new_tat - now
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(reset / 1000))
return {1, math.floor((now - allow_at) / interval), 0, reset}
`

var gcraLua = redis.NewScript(gcraScript)

// RedisOptions configure a Redis limiter.
type RedisOptions struct {
	// Prefix is prepended to every key; empty means DefaultRedisPrefix.
	Prefix string
}

// Redis is a GCRA limiter whose state lives in Redis, so that every gateway
// replica using the same Redis shares one limit exactly. Each decision is
// one Lua script (EVALSHA, falling back to EVAL when the server does not
// have it cached) that reads and updates the key atomically using the
// server's clock. Keys expire as soon as they are back at full burst.
//
// Its resolution is one microsecond: a Limit whose interval is shorter is
// rejected, and other intervals are rounded to the nearest microsecond.
//
// When Redis cannot be reached or fails, Allow returns the error and a zero
// Result; it does not guess. Whether to then fail open (serve the request,
// perhaps limited by a Local as a fallback) or closed (reject it) is the
// caller's decision, because it depends on what the limit protects.
type Redis struct {
	client redis.Scripter
	prefix string
}

// NewRedis returns a limiter using client, which may be a *redis.Client,
// *redis.ClusterClient, or any other redis.Scripter. The caller owns client
// and closes it.
func NewRedis(client redis.Scripter, opts RedisOptions) *Redis {
	p := opts.Prefix
	if p == "" {
		p = DefaultRedisPrefix
	}
	return &Redis{client: client, prefix: p}
}

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, l Limit) (Result, error) {
	if err := l.Validate(); err != nil {
		return Result{}, err
	}
	interval := l.Rate.Interval().Round(time.Microsecond).Microseconds()
	if interval < 1 {
		return Result{}, fmt.Errorf("%w: rate %s is faster than one per microsecond, the Redis limiter's resolution", ErrInvalidLimit, l.Rate)
	}
	v, err := gcraLua.Run(ctx, r.client, []string{r.prefix + key}, interval, l.Burst).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: redis: %w", err)
	}
	if len(v) != 4 {
		return Result{}, fmt.Errorf("ratelimit: redis: script returned %d values, want 4", len(v))
	}
	return result(v[0] == 1, int(v[1]), v[2], v[3], int64(time.Microsecond)), nil
}
