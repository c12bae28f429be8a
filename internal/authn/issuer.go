package authn

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Issuer is a trusted OIDC/JWT issuer, the runtime form of the Issuer
// resource.
type Issuer struct {
	// Name is how routes refer to the issuer.
	Name string
	// IssuerURL must equal the tokens' "iss" exactly. Without JWKSURL, the
	// JWKS location is discovered from IssuerURL +
	// "/.well-known/openid-configuration".
	IssuerURL string
	// JWKSURL, if set, is where the signing keys are fetched.
	JWKSURL string
	// Audiences: a token's "aud" must contain at least one of them.
	Audiences []string
	// Algorithms allowed for this issuer's signatures. Default RS256, ES256.
	// "none" and HMAC algorithms (HS*) are refused: a verifier that only
	// knows public keys must never accept a shared-secret signature.
	Algorithms []string
	// Leeway for exp, nbf and iat. Default 30s, at most 5m.
	Leeway time.Duration
}

// Issuer defaults and bounds.
const (
	DefaultLeeway = 30 * time.Second
	MaxLeeway     = 5 * time.Minute
)

// DefaultAlgorithms are used when an [Issuer] names none.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// supportedAlgorithms are the asymmetric JWS algorithms Ward verifies.
var supportedAlgorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
}

// WithDefaults returns a copy of i with unset fields defaulted.
func (i Issuer) WithDefaults() Issuer {
	if len(i.Algorithms) == 0 {
		i.Algorithms = slices.Clone(DefaultAlgorithms)
	} else {
		i.Algorithms = slices.Clone(i.Algorithms)
	}
	if i.Leeway == 0 {
		i.Leeway = DefaultLeeway
	}
	i.Audiences = slices.Clone(i.Audiences)
	return i
}

// Validate checks a defaulted Issuer; URLs must be https.
func (i Issuer) Validate() error { return i.validate(false) }

func (i Issuer) validate(loopbackHTTP bool) error {
	var errs []error
	if i.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	if err := checkFetchURL(i.IssuerURL, loopbackHTTP); err != nil {
		errs = append(errs, fmt.Errorf("issuerURL: %w", err))
	} else if u, _ := url.Parse(i.IssuerURL); u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, errors.New("issuerURL: must not have a query or fragment"))
	}
	if i.JWKSURL != "" {
		if err := checkFetchURL(i.JWKSURL, loopbackHTTP); err != nil {
			errs = append(errs, fmt.Errorf("jwksURL: %w", err))
		}
	}
	if len(i.Audiences) == 0 {
		errs = append(errs, errors.New("at least one audience is required"))
	}
	for _, a := range i.Audiences {
		if a == "" {
			errs = append(errs, errors.New("empty audience"))
		}
	}
	if len(i.Algorithms) == 0 {
		errs = append(errs, errors.New("at least one algorithm is required"))
	}
	for _, a := range i.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			errs = append(errs, errors.New(`algorithm "none" is never allowed`))
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			errs = append(errs, fmt.Errorf("algorithm %q: HMAC is not allowed for an issuer (public keys only)", a))
		case !slices.Contains(supportedAlgorithms, a):
			errs = append(errs, fmt.Errorf("algorithm %q is not supported (want one of %s)", a, strings.Join(supportedAlgorithms, ", ")))
		}
	}
	if i.Leeway < 0 || i.Leeway > MaxLeeway {
		errs = append(errs, fmt.Errorf("leeway %s: must be between 0 and %s", i.Leeway, MaxLeeway))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("issuer %q: %w", i.Name, err)
	}
	return nil
}

// checkFetchURL allows https URLs, and plain http to a loopback IP address
// only when loopbackHTTP is set (tests and local demos).
func checkFetchURL(raw string, loopbackHTTP bool) error {
	if strings.ContainsAny(raw, " \t\r\n") {
		return errors.New("must not contain whitespace")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	if u.Host == "" || u.User != nil {
		return fmt.Errorf("%q: need an absolute URL with a host and no user info", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); loopbackHTTP && ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("%q: must be https", raw)
}
