// Package detect holds Ward's answers to attacking callers. Bans compiles
// the Ban resources of a snapshot into a table every gateway and sidecar
// consults once per request, before any authentication work: a lookup by
// source address (and the CIDRs holding it), API key prefix, user (issuer
// and subject) or SPIFFE ID that costs a few map probes and allocates
// nothing. Expired bans stop matching at their instant, without waiting
// for the server to remove them.
package detect
