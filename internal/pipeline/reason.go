package pipeline

import (
	"net/http"
	"sort"

	"github.com/wardsec/ward/internal/authn"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/proxy"
)

// Reason is why a request was refused: a code that clients and records
// carry, the status it answers with and, for credentials, the
// WWW-Authenticate challenge. Reasons are registered once, here, so that
// the gateway and the sidecar answer the same refusal the same way and no
// code reaches a client without a status of its own.
type Reason struct {
	Code      string
	Status    int
	Challenge string // WWW-Authenticate value; "" for none
}

// registry holds every Reason by code. It is written only while the
// package initialises, so it is read without a lock.
var registry = map[string]Reason{}

func register(code string, status int, challenge string) Reason {
	if _, dup := registry[code]; dup {
		panic("pipeline: reason " + code + " registered twice")
	}
	r := Reason{Code: code, Status: status, Challenge: challenge}
	registry[code] = r
	return r
}

// Lookup returns the registered Reason of code. An unregistered code is a
// bug; it answers as Internal, so that whatever text it holds stays out of
// the response.
func Lookup(code string) Reason {
	if r, ok := registry[code]; ok {
		return r
	}
	return Internal
}

// Codes lists every registered reason code, sorted.
func Codes() []string {
	out := make([]string, 0, len(registry))
	for c := range registry {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

const (
	challengeMissing = `Bearer realm="ward"`
	challengeInvalid = `Bearer realm="ward", error="invalid_token"`
)

// The reasons of Ward's request path. Credentials' reasons use authn's
// codes, policy decisions policy's, body checks proxy's.
var (
	Internal = register("internal_error", http.StatusInternalServerError, "")

	// Hygiene and admission.
	Malformed        = register("malformed_request", http.StatusBadRequest, "")
	AmbiguousPath    = register(policy.ReasonAmbiguousPath, http.StatusBadRequest, "")
	TooManyRequests  = register("too_many_concurrent_requests", http.StatusTooManyRequests, "")
	NoRoute          = register("no_route", http.StatusNotFound, "")
	UnknownService   = register("unknown_service", http.StatusBadGateway, "")
	BodyTooLarge     = register(proxy.ReasonBodyTooLarge, http.StatusRequestEntityTooLarge, "")
	BodyTooSlow      = register(proxy.ReasonBodyTooSlow, http.StatusRequestTimeout, "")
	BodyBudget       = register(proxy.ReasonBodyBudget, http.StatusServiceUnavailable, "")
	BodyMalformed    = register(proxy.ReasonBodyMalformed, http.StatusBadRequest, "")
	AuditUnavailable = register("audit_unavailable", http.StatusServiceUnavailable, "")

	// Credentials at the edge.
	APIKeyMissing      = register("apikey_missing", http.StatusUnauthorized, "")
	APIKeyMalformed    = register(authn.ReasonAPIKeyMalformed, http.StatusUnauthorized, "")
	APIKeyUnknown      = register(authn.ReasonAPIKeyUnknown, http.StatusUnauthorized, "")
	APIKeyRevoked      = register(authn.ReasonAPIKeyRevoked, http.StatusUnauthorized, "")
	APIKeyExpired      = register(authn.ReasonAPIKeyExpired, http.StatusUnauthorized, "")
	APIKeyOutOfScope   = register(authn.ReasonAPIKeyOutOfScope, http.StatusForbidden, "")
	APIKeyUnavailable  = register(authn.ReasonAPIKeyUnavailable, http.StatusServiceUnavailable, "")
	JWTMissing         = register("jwt_missing", http.StatusUnauthorized, challengeMissing)
	JWTMalformed       = register(authn.ReasonJWTMalformed, http.StatusUnauthorized, challengeInvalid)
	JWTTooLarge        = register(authn.ReasonJWTTooLarge, http.StatusUnauthorized, challengeInvalid)
	JWTAlgNotAllowed   = register(authn.ReasonJWTAlgNotAllowed, http.StatusUnauthorized, challengeInvalid)
	JWTUnknownKey      = register(authn.ReasonJWTUnknownKey, http.StatusUnauthorized, challengeInvalid)
	JWTKeysUnavailable = register(authn.ReasonJWTKeysUnavailable, http.StatusServiceUnavailable, "")
	JWTBadSignature    = register(authn.ReasonJWTBadSignature, http.StatusUnauthorized, challengeInvalid)
	JWTWrongIssuer     = register(authn.ReasonJWTWrongIssuer, http.StatusUnauthorized, challengeInvalid)
	JWTWrongAudience   = register(authn.ReasonJWTWrongAudience, http.StatusUnauthorized, challengeInvalid)
	JWTExpired         = register(authn.ReasonJWTExpired, http.StatusUnauthorized, challengeInvalid)
	JWTNotYetValid     = register(authn.ReasonJWTNotYetValid, http.StatusUnauthorized, challengeInvalid)
	JWTMissingClaim    = register(authn.ReasonJWTMissingClaim, http.StatusUnauthorized, challengeInvalid)
	CertMissing        = register("client_cert_missing", http.StatusUnauthorized, "")
	IssuersNotDefined  = register("no_issuers", http.StatusServiceUnavailable, "")

	// Authorization and limits.
	ConditionFailed  = register("route_condition_failed", http.StatusForbidden, "")
	NoPolicy         = register(policy.ReasonNoPolicy, http.StatusForbidden, "")
	NoRuleMatches    = register(policy.ReasonNoRuleMatches, http.StatusForbidden, "")
	ConditionError   = register(policy.ReasonConditionError, http.StatusForbidden, "")
	RateLimited      = register("rate_limited", http.StatusTooManyRequests, "")
	LimiterDown      = register("ratelimit_unavailable", http.StatusServiceUnavailable, "")
	TokenUnavailable = register("identity_token_unavailable", http.StatusServiceUnavailable, "")

	// Input inspection: the core rule set's anomaly score reached the
	// threshold, or a body could not be inspected and the setting refuses.
	WAF = register("waf", http.StatusForbidden, "")

	// Mesh callers.
	NoIdentity           = register("no_identity", http.StatusForbidden, "")
	Revoked              = register("revoked", http.StatusForbidden, "")
	IdentityTokenInvalid = register("identity_token_invalid", http.StatusUnauthorized, "")

	// Upstream failures.
	UpstreamUnreachable = register("upstream_unreachable", http.StatusBadGateway, "")
	CircuitOpen         = register("circuit_open", http.StatusServiceUnavailable, "")
	EndpointsEjected    = register("endpoints_ejected", http.StatusServiceUnavailable, "")
	// NoEndpoints: the service has no endpoint at all, not yet (no
	// instance has registered) or no longer.
	NoEndpoints = register("no_endpoints", http.StatusServiceUnavailable, "")
)

// WithStatus returns r answering with status instead: request hygiene
// refuses with one code and the status of the rule broken (400, 414, 431).
func (r Reason) WithStatus(status int) Reason {
	r.Status = status
	return r
}
