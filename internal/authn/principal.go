package authn

import (
	"slices"
	"strings"

	"github.com/wardsec/ward/internal/proxy"
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

// Key returns the log key of p for kind, the name records give the
// caller (rate limits use [Principal.LimitKey]):
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
			return "source:" + SourceNetwork(p.Source)
		}
	}
	if p.AnonymousID != "" {
		return "anonymous:" + p.AnonymousID
	}
	if p.Source != "" {
		return "source:" + SourceNetwork(p.Source)
	}
	return "anonymous:unknown"
}

// LimitKey returns the rate-limit key of p for kind. It is [Principal.Key]
// except where Key would name an anonymous caller: limits on anonymous
// callers hold per source network ("source:" + [SourceNetwork]) whatever
// headers they send. The anonymous id mixes in the User-Agent, so a caller
// could escape a limit keyed on it by changing its User-Agent; it stays the
// caller's name in records.
func (p Principal) LimitKey(kind string) string {
	k := p.Key(kind)
	if strings.HasPrefix(k, "anonymous:") && p.Source != "" {
		return "source:" + SourceNetwork(p.Source)
	}
	return k
}

// HasScope reports whether the token granted scope s.
func (p Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

// SourceNetwork returns the unit Ward treats as one client: an IPv4
// address, or the /64 of an IPv6 address (one host usually owns a whole
// /64, and privacy addresses rotate inside it); IPv4-mapped IPv6 addresses
// count as IPv4. Anything unparseable is returned unchanged.
func SourceNetwork(ip string) string { return proxy.SourceNetwork(ip) }
