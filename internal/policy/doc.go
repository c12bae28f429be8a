// Package policy authorizes requests between services: it compiles the
// AccessPolicies of package resource into an immutable [Engine] whose
// [Engine.Decide] says whether a caller may make a request, which rule
// decided, and why, as a stable reason code for audit records.
//
// Access is denied by default. A request is allowed when a rule of an
// AccessPolicy for its target service matches all of:
//
//   - the caller: its SPIFFE ID is in the engine's trust domain and its path
//     matches a "from" pattern, segment by segment ("svc/*" matches
//     svc/catalog, not svc/a/b; "*" alone matches any identity of the trust
//     domain; a caller without an identity, or with the trust domain's own
//     ID, matches nothing);
//   - the method: HTTP methods are compared upper-cased; "*" matches any;
//   - the path: the request path is put in canonical form first
//     ([NormalizePath]; ambiguous paths are refused before any policy runs,
//     dry-run ones included, with reason "ambiguous_path"),
//     then compared case-sensitively with exact patterns ("/health") or
//     prefix patterns ("/orders/*" matches /orders/ and everything below it,
//     not /orders);
//   - the condition: an optional CEL expression, compiled with the policy.
//
// Conditions see these variables:
//
//	request.method      string, upper-case
//	request.path        string, canonical
//	request.headers     map(string, string): lower-case names, the values of
//	                    a repeated header joined with ", "
//	peer.id             string, the caller's SPIFFE ID ("" without one)
//	peer.trust_domain   string
//	peer.path           string, such as "/svc/catalog"
//	user                map(string, dyn): the end user's claims, such as
//	                    user.scopes; empty without a user
//
// Conditions run within a cost budget rather than a timeout. One that fails
// to evaluate (a missing claim, a type mismatch, its budget exhausted) does
// not match: if no other rule allows, the request is denied with reason
// "condition_error". It fails closed.
//
// Several policies may target one service. If any of them enforces, the
// enforcing ones decide, and one allowing is enough. If all of them are dry
// runs, they decide as if enforcing, and a denial is reported but not
// applied: the Decision allows, with DryRun set and the reason of the denial.
//
// [Compile] checks a set of resources completely: what [resource.Validate]
// checks, and conditions and path patterns. Whatever accepts resources (an
// apply, a snapshot) should compile them before taking them.
package policy
