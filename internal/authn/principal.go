package authn

import (
	"net/netip"
	"slices"
)

// Principal says who is calling. The gateway builds one per request from
// whatever credentials the route asks for; several fields may be set at once
// (an application calling on behalf of a user).
type Principal struct {
	// SPIFFEID is the verified SPIFFE ID of a mesh caller (mTLS), if any.
	SPIFFEID string
	// AppID is the id of the application an API key was issued to.
	AppID string
	// KeyPrefix is the non-secret prefix of the API key used, for audit.
	KeyPrefix string
	// KeyScopes are the routes the API key is valid for.
	KeyScopes []string
	// User is the subject ("sub") of a verified token or client certificate.
	User string
	// Issuer is the "iss" of the verified token that named User.
	Issuer string
	// Claims are all claims of the verified token.
	Claims map[string]any
	// Scopes are the OAuth scopes of the token: "scope" split on spaces, or
	// the "scp" array (or space-separated string).
	Scopes []string
	// Source is the remote IP address of the caller as the gateway saw it.
	Source string
	// AnonymousID is set by the gateway from [AnonymousID] so that every
	// caller, identified or not, has a stable key.
	AnonymousID string
}

// Kinds of rate-limit key accepted by [Principal.Key]; they match the
// Route resource's rateLimit.key.
const (
	KeyKindAPIKey    = "apikey"
	KeyKindUser      = "user"
	KeyKindSPIFFE    = "spiffe"
	KeyKindAnonymous = "anonymous"
	KeyKindSource    = "source"
)

// Key returns the rate-limit (and log) key of p for kind:
//
//   - "apikey":    "apikey:" + AppID (all keys of one application share it)
//   - "user":      "user:" + Issuer + " " + User (a subject is only unique
//     within its issuer; issuer URLs cannot contain spaces)
//   - "spiffe":    "spiffe:" + SPIFFEID
//   - "anonymous": "anonymous:" + AnonymousID
//   - "source":    "source:" + the source address, IPv6 reduced to its /64
//     (one host usually owns a whole /64)
//
// When p lacks the identity kind asks for (an unauthenticated caller on a
// route limited per user, or an unknown kind), Key falls back to the
// anonymous key, then to the source key, and finally to
// "anonymous:unknown", which all unidentifiable callers share: the result
// is never empty, so a caller cannot escape a limit by presenting less.
func (p Principal) Key(kind string) string {
	switch kind {
	case KeyKindAPIKey:
		if p.AppID != "" {
			return "apikey:" + p.AppID
		}
	case KeyKindUser:
		if p.User != "" {
			return "user:" + p.Issuer + " " + p.User
		}
	case KeyKindSPIFFE:
		if p.SPIFFEID != "" {
			return "spiffe:" + p.SPIFFEID
		}
	case KeyKindSource:
		if p.Source != "" {
			return "source:" + clientNetwork(p.Source)
		}
	}
	if p.AnonymousID != "" {
		return "anonymous:" + p.AnonymousID
	}
	if p.Source != "" {
		return "source:" + clientNetwork(p.Source)
	}
	return "anonymous:unknown"
}

// HasScope reports whether the token granted scope s.
func (p Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

// clientNetwork returns the unit Ward treats as one client: an IPv4 address,
// or the /64 of an IPv6 address. IPv4-mapped IPv6 addresses count as IPv4.
// Anything unparseable is returned unchanged.
func clientNetwork(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}
