// Package pipeline is Ward's one request path. The gateway and the sidecar
// run the same Pipeline; they differ only in their list of stages and in
// their configuration.
//
// A request becomes an Exchange, taken from a pool, with a request id, the
// client's address and a Writer that records the response's status and
// size. Each Stage reads and updates the exchange in turn. A stage either
// lets the request go on (it returns the zero Refusal) or stops it with a
// Refusal: a registered Reason and a detail for the operator. The pipeline
// then answers with Render — the same JSON body from every role, with only
// the reason's code, never the detail — and the role's Record hook writes
// the record once the request is over.
//
// The gateway's stages are hygiene, ban, admit, route, authenticate,
// ban-user, authorize, limit, waf and forward; the sidecar's hygiene, ban,
// identify, authorize, waf, record (before the app sees anything: what cannot be
// recorded is not forwarded), body and forward. The waf stage receives
// the body itself when its rules read it, and the body stage then has
// nothing left to do.
//
// # Adding a stage
//
//  1. Write it as a method of the role with the signature
//     func(*pipeline.Exchange[S]) pipeline.Refusal. Keep what later
//     stages need in the role's state, x.State; something to release once
//     the response is over (a slot, a buffer) goes to x.Defer.
//  2. Refuse with a Reason from this package's registry; a new kind of
//     refusal is registered in reason.go with its status and, for
//     credentials, its WWW-Authenticate challenge. Clients see only the
//     code; the detail goes to the record.
//  3. Put it in the role's list (gateway.newPipeline, sidecar.newPipeline)
//     at the place its inputs are ready: after hygiene, before forward.
//  4. Give it a benchmark with b.ReportAllocs: the roles' BenchmarkStages
//     measure each prefix of the list, so the new stage's price shows as
//     the difference it makes, and bench/gateway/run.sh prints it.
//
// Front is the other shared half: the TLS listener of a role, where
// connections are admitted, handshaken under a deadline and, for
// HTTP/1.x, passed through the request guard before net/http sees them.
package pipeline
