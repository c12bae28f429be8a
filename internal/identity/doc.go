// Package identity is the workload side of Ward's identity system: SPIFFE
// IDs and trust bundles, the X.509-SVID a process holds (key generated
// locally, enrolled with a join token, renewed at half-life), the revocation
// list it follows, and the tls.Config builders that check a peer's chain,
// SPIFFE ID and revocation status in VerifyConnection.
package identity
