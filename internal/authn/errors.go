package authn

import "errors"

// Reason codes carried by [*Error]. They are stable: the audit log, metrics
// and dashboards key on them.
const (
	ReasonAPIKeyMalformed   = "apikey_malformed"    // not of the form wak_<prefix>_<secret>
	ReasonAPIKeyUnknown     = "apikey_unknown"      // no such prefix, or the secret does not match
	ReasonAPIKeyRevoked     = "apikey_revoked"      // right key, revoked
	ReasonAPIKeyExpired     = "apikey_expired"      // right key, past its expiry
	ReasonAPIKeyOutOfScope  = "apikey_out_of_scope" // right key, not valid for this route
	ReasonAPIKeyUnavailable = "apikey_unavailable"  // the key store failed (a 503, not a 401)

	ReasonJWTMalformed       = "jwt_malformed"        // not a compact JWS with a JSON claims set
	ReasonJWTTooLarge        = "jwt_too_large"        // longer than MaxTokenSize
	ReasonJWTAlgNotAllowed   = "jwt_alg_not_allowed"  // alg is none, HMAC, or not in the issuer's allow-list
	ReasonJWTUnknownKey      = "jwt_unknown_key"      // no JWKS key with this kid fits the alg, even after a refresh
	ReasonJWTKeysUnavailable = "jwt_keys_unavailable" // the issuer's JWKS could never be fetched (a 503, not a 401)
	ReasonJWTBadSignature    = "jwt_bad_signature"    // signature empty or does not verify
	ReasonJWTWrongIssuer     = "jwt_wrong_issuer"     // iss is not a configured (or route-allowed) issuer
	ReasonJWTWrongAudience   = "jwt_wrong_audience"   // aud contains none of the issuer's audiences
	ReasonJWTExpired         = "jwt_expired"          // exp is past, beyond the leeway
	ReasonJWTNotYetValid     = "jwt_not_yet_valid"    // nbf or iat is in the future, beyond the leeway
	ReasonJWTMissingClaim    = "jwt_missing_claim"    // exp or sub is absent
)

// Error is an authentication failure. Reason is for the audit record and
// the client; Detail and Err are for the operator's log. None of them ever
// contains the presented credential.
type Error struct {
	Reason string
	Detail string
	Err    error
}

func (e *Error) Error() string {
	s := "authn: " + e.Reason
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same reason, so that
// errors.Is(err, authn.ErrJWTExpired) works for any expired-token error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}

// Sentinels for errors.Is; one per reason code.
var (
	ErrAPIKeyMalformed   = &Error{Reason: ReasonAPIKeyMalformed}
	ErrAPIKeyUnknown     = &Error{Reason: ReasonAPIKeyUnknown}
	ErrAPIKeyRevoked     = &Error{Reason: ReasonAPIKeyRevoked}
	ErrAPIKeyExpired     = &Error{Reason: ReasonAPIKeyExpired}
	ErrAPIKeyOutOfScope  = &Error{Reason: ReasonAPIKeyOutOfScope}
	ErrAPIKeyUnavailable = &Error{Reason: ReasonAPIKeyUnavailable}

	ErrJWTMalformed       = &Error{Reason: ReasonJWTMalformed}
	ErrJWTTooLarge        = &Error{Reason: ReasonJWTTooLarge}
	ErrJWTAlgNotAllowed   = &Error{Reason: ReasonJWTAlgNotAllowed}
	ErrJWTUnknownKey      = &Error{Reason: ReasonJWTUnknownKey}
	ErrJWTKeysUnavailable = &Error{Reason: ReasonJWTKeysUnavailable}
	ErrJWTBadSignature    = &Error{Reason: ReasonJWTBadSignature}
	ErrJWTWrongIssuer     = &Error{Reason: ReasonJWTWrongIssuer}
	ErrJWTWrongAudience   = &Error{Reason: ReasonJWTWrongAudience}
	ErrJWTExpired         = &Error{Reason: ReasonJWTExpired}
	ErrJWTNotYetValid     = &Error{Reason: ReasonJWTNotYetValid}
	ErrJWTMissingClaim    = &Error{Reason: ReasonJWTMissingClaim}
)

// ReasonOf returns the reason code of err, or "" if err is not an [*Error].
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func fail(reason, detail string, cause error) *Error {
	return &Error{Reason: reason, Detail: detail, Err: cause}
}
