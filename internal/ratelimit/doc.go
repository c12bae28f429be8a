// Package ratelimit limits how often a caller, named by a key, may act.
//
// The algorithm is GCRA (the generic cell rate algorithm): for every key the
// limiter keeps one number, the theoretical arrival time (TAT) of the next
// request if the caller used exactly its rate. A request is allowed when it
// arrives no earlier than TAT minus the burst tolerance, and then pushes TAT
// forward by one emission interval (the rate's period divided by its count).
// This is equivalent to a token bucket holding Burst tokens and refilled at
// Rate, but needs no background refill and one value per key.
//
// Two implementations of [Limiter] share these semantics:
//
//   - [Local] keeps the state in process memory. It is the default: fast
//     (no allocation for a key it already knows), with bounded memory.
//     Each process has its own limit, so N gateway replicas behind a load
//     balancer together allow up to N times the configured rate.
//   - [Redis] keeps the state in Redis and runs the whole decision as one Lua
//     script, using the Redis server's clock, so any number of gateway
//     replicas share one exact limit.
//
// [Headers] writes the IETF RateLimit-* response headers and Retry-After,
// and [ConnLimiter] applies a per-source connection-rate limit to a
// [net.Listener].
package ratelimit
