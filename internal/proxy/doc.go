// Package proxy holds the shared pieces of Ward's HTTP data path that sit
// in front of, and behind, the handlers of the gateway and the sidecar.
//
// In front: [Guard] validates the framing of every HTTP/1.x request on a
// connection before net/http parses it (security invariant 4). net/http on
// its own accepts some ambiguous requests: it silently drops Content-Length
// when Transfer-Encoding is present, joins obs-folded lines, accepts equal
// duplicate Content-Length values and header names with underscores, and
// ignores Transfer-Encoding on HTTP/1.0. A handler cannot tell that such a
// request was ambiguous, so a proxy that forwards it may be desynchronized
// from the next hop (request smuggling). The guard sits between the socket
// and net/http, as a [net.Listener] or [net.Conn] wrapper, and rejects those
// requests with a short 4xx before a single byte of them reaches net/http.
// HTTP/2 requests, which net/http parses from frames itself, meet the same
// header rules and limits in the handler through [Guard.Check]; the rule
// for field names is one function for both. [StripWard] and [WardOwned]
// know Ward's own headers in every spelling, and [RestoreWard] keeps them
// on the way out whatever a Connection header names (invariant 3).
//
// Bodies: [Bodies] applies a per-request body limit, receives bodies whole
// (up to a bound) before they are forwarded, enforces a minimum data rate
// and charges buffered bytes to one process-wide [Budget]; [SourceCap]
// bounds the concurrent requests of each source network (security
// invariant 9). The gateway and the sidecar share them.
//
// Behind: [Breaker], [Ejector] and [RetryBudget] are the small resilience
// primitives the forwarding path uses to isolate faulty upstreams.
package proxy
