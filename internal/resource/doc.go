// Package resource is Ward's declarative model: the documents operators write
// (`apiVersion: ward/v1`, shaped like Kubernetes objects), decoded strictly and
// validated, with every problem reported as file:line.
//
// One schema serves the file, the admin API and the store: JSON is YAML, so
// whatever carries resources goes through [Parse]. Reading a document goes
// through three steps:
//
//  1. strict decoding: unknown fields, duplicate fields, wrong types, aliases,
//     unknown kinds and missing required fields are errors;
//  2. defaults: omitted fields get their documented default, so stored objects
//     are explicit;
//  3. validation of each object ([Parse]) and of a whole set ([Validate]:
//     duplicates and references between objects, such as the Service an
//     AccessPolicy targets).
//
// The types here are the file format. Runtime values are compiled from them
// elsewhere: package policy turns AccessPolicies into an authorization engine
// and checks what only it can, such as CEL conditions and the canonical form
// of path patterns, reporting those with the same file:line locations.
//
// Which Route answers a request is decided here, once: the gateway routes
// with a [RouteTable], and the control plane checks with [Reroutes], on the
// same table, which requests a change would send to another Route.
package resource
