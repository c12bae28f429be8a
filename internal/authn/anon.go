package authn

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// AnonymousID returns the id Ward gives a caller that presented no
// credential:
//
//	"anon_" + base64url(HMAC-SHA256(secret, network + "\x00" + userAgent))[:22]
//
// where network is the source address, or its /64 for IPv6 (one host usually
// owns a whole /64, and privacy addresses rotate inside it). 22 base64url
// characters keep 132 bits of the MAC: collisions are not a concern.
//
// Properties and trade-offs:
//   - Stable: the same client (address and User-Agent) gets the same id on
//     every gateway replica that shares secret, so records line up.
//   - Unlinkable without the secret: the id reveals neither the address nor
//     the User-Agent, and ids from deployments with different secrets cannot
//     be joined. Rotating the secret unlinks all past ids.
//   - Not anonymous against the secret's holder: the IPv4 space is small, so
//     whoever has the secret can recover an address by trying them all. Keep
//     the secret in the vault (at least 32 random bytes) and treat ids as
//     pseudonymous personal data.
//   - Coarse: clients behind one NAT with the same browser share an id, and a
//     client can get a new id by changing its User-Agent. The id is
//     therefore for records only: rate limits on anonymous callers key on
//     the source network (see [Principal.Key]).
//
// NUL cannot occur in an IP address or an HTTP header value, so the
// separator keeps (address, User-Agent) pairs unambiguous.
func AnonymousID(secret []byte, sourceIP string, userAgent string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(SourceNetwork(sourceIP)))
	m.Write([]byte{0})
	m.Write([]byte(userAgent))
	return "anon_" + base64.RawURLEncoding.EncodeToString(m.Sum(nil))[:22]
}
