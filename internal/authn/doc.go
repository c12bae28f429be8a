// Package authn turns the credentials a caller presents into a [Principal]:
// who is calling, as far as Ward can prove it.
//
// Three kinds of credential are understood here:
//
//   - API keys identify an application. They are created once by
//     `ward apikey create` with [NewAPIKey], shown to the operator once, and
//     stored only as a SHA-256 digest in an [APIKeyRecord]. [APIKeys]
//     authenticates a presented key by its non-secret prefix, compares
//     digests in constant time and checks revocation, expiry and route scope.
//   - OIDC/JWT bearer tokens identify a user. A [Verifier] checks them
//     against configured [Issuer]s whose JWKS it fetches over HTTPS, caches
//     and refreshes (on an unknown kid, at most once per 30s, and
//     periodically from [Verifier.Run]).
//   - Callers that present nothing get an anonymous id ([AnonymousID]), so
//     rate limits and logs always have a key ([Principal.Key]).
//
// Client certificates (mTLS) are verified by internal/identity; the gateway
// copies the verified SPIFFE ID into [Principal.SPIFFEID].
//
// Every failure is an [*Error] with a stable reason code (the Reason*
// constants) that ends up in the audit record. Error strings never contain the
// presented credential: not the API key, not the token nor any of its
// segments.
package authn
