package resource

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/wardsec/ward/internal/ratelimit"
)

// Kinds of the edge (north-south) resources.
const (
	KindRoute  = "Route"
	KindIssuer = "Issuer"
)

// RouteSpec says what the gateway exposes and how callers must prove who
// they are. A request matches the Route with the longest PathPrefix among
// those whose Host equals the request's host (or that have no Host).
type RouteSpec struct {
	// Host is the request host the route answers ("api.example.com"),
	// without a port; empty answers any host.
	Host string `yaml:"host,omitempty"`
	// PathPrefix selects requests by normalized path: "/orders" matches
	// /orders and /orders/..., not /ordersx. "/" matches everything.
	PathPrefix string `yaml:"pathPrefix"`
	// Service is the Service requests are sent to, through the mesh.
	Service string `yaml:"service"`
	// Auth says which credentials callers must present.
	Auth RouteAuth `yaml:"auth"`
	// RateLimit bounds each caller; omitted means no per-route limit.
	RateLimit RouteRateLimit `yaml:"rateLimit,omitempty"`
	// ForwardCredentials sends the caller's Authorization header and API
	// key on to the service. Off by default: services receive Ward's
	// identity token instead and never see the original credentials.
	ForwardCredentials bool `yaml:"forwardCredentials,omitempty"`
	// Limits bound what one request may send; omitted: a body of at most
	// 1MiB.
	Limits Limits `yaml:"limits,omitempty"`
	// WAF inspects requests with the OWASP Core Rule Set; omitted: off.
	WAF WAF `yaml:"waf,omitempty"`
}

// Requirement levels of RouteAuth.APIKey.
const (
	APIKeyRequired = "required"
	APIKeyOptional = "optional"
	APIKeyNone     = "none"
)

// User credentials a Route may ask for.
const (
	UserJWT       = "jwt"       // a bearer token from one of the route's issuers
	UserMTLS      = "mtls"      // a client certificate from the gateway's client CA
	UserAnonymous = "anonymous" // none: the caller gets an anonymous id
)

// RouteAuth is a Route's authentication requirements.
type RouteAuth struct {
	// APIKey is required (the default), optional or none.
	APIKey string `yaml:"apiKey"`
	// User is jwt (the default), mtls or anonymous.
	User string `yaml:"user"`
	// Issuers are the Issuer resources whose tokens the route accepts
	// (user: jwt); empty accepts every Issuer.
	Issuers []string `yaml:"issuers,omitempty"`
	// When is an optional CEL condition over request and user (the token's
	// claims, plus "scopes" and "app") that must hold, such as
	// 'user.scopes.exists(s, s == "orders:read")'.
	When string `yaml:"when,omitempty"`
}

// RouteRateLimit limits each caller of a Route with GCRA.
type RouteRateLimit struct {
	// Key says what identifies a caller: apikey, user, anonymous, source,
	// or two of them joined with "+" (such as "apikey+user"): see
	// authn.Principal.Key. Default: user.
	Key string `yaml:"key"`
	// Rate is COUNT/PERIOD, such as "100/s" or "10/m".
	Rate string `yaml:"rate"`
	// Burst is how many requests may arrive at once; default Count.
	Burst int `yaml:"burst,omitempty"`
}

// IssuerSpec is a trusted OIDC/JWT issuer. Its keys are fetched from the
// JWKS (discovered from IssuerURL unless JWKSURL is set) and cached.
type IssuerSpec struct {
	// IssuerURL must equal the tokens' "iss". https, or http on a loopback
	// address only.
	IssuerURL string `yaml:"issuerURL"`
	// JWKSURL overrides discovery.
	JWKSURL string `yaml:"jwksURL,omitempty"`
	// Audiences: a token's aud must contain one of them. Required.
	Audiences []string `yaml:"audiences"`
	// Algorithms allowed for signatures; default RS256 and ES256. HMAC and
	// none are never accepted.
	Algorithms []string `yaml:"algorithms,omitempty"`
	// Leeway for exp, nbf and iat, a Go duration; default 30s, at most 5m.
	Leeway string `yaml:"leeway,omitempty"`
}

// rateKeyKinds are the identities a rate-limit key may name.
var rateKeyKinds = []string{"apikey", "user", "anonymous", "source", "spiffe"}

// issuerAlgorithms are the asymmetric algorithms an Issuer may allow.
var issuerAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

func (s *RouteSpec) setDefaults() {
	if s.Auth.APIKey == "" {
		s.Auth.APIKey = APIKeyRequired
	}
	if s.Auth.User == "" {
		s.Auth.User = UserJWT
	}
	if len(s.Auth.Issuers) == 0 {
		s.Auth.Issuers = nil // "issuers: []" and none are the same
	}
	if s.RateLimit.Rate != "" && s.RateLimit.Key == "" {
		s.RateLimit.Key = "user"
	}
	if r, err := ratelimit.ParseRate(s.RateLimit.Rate); err == nil && s.RateLimit.Burst == 0 && r.Count <= 1<<20 {
		s.RateLimit.Burst = int(r.Count)
	}
}

func (s *IssuerSpec) setDefaults() {
	if len(s.Algorithms) == 0 {
		s.Algorithms = []string{"RS256", "ES256"}
	}
	if s.Leeway == "" {
		s.Leeway = "30s"
	}
}

func (s *RouteSpec) validate(v validator) {
	if s.Host != "" {
		h := strings.ToLower(s.Host)
		if h != s.Host || strings.ContainsAny(h, ":/ ") || net.ParseIP(h) == nil && !isHostname(h) {
			v.errorf("spec.host", "invalid host %q: a lowercase DNS name or IP address without port", s.Host)
		}
	}
	switch {
	case s.PathPrefix == "":
		v.errorf("spec.pathPrefix", "required: the path prefix the route answers, such as /orders")
	case !strings.HasPrefix(s.PathPrefix, "/"):
		v.errorf("spec.pathPrefix", "invalid path prefix %q: must start with '/'", s.PathPrefix)
	case s.PathPrefix != "/" && strings.HasSuffix(s.PathPrefix, "/"):
		v.errorf("spec.pathPrefix", "invalid path prefix %q: leave out the final '/'", s.PathPrefix)
	case strings.ContainsAny(s.PathPrefix, "%*?#\\") || strings.Contains(s.PathPrefix, "//") ||
		slices.Contains(strings.Split(s.PathPrefix, "/"), "..") || slices.Contains(strings.Split(s.PathPrefix, "/"), "."):
		v.errorf("spec.pathPrefix", "invalid path prefix %q: write it in canonical form, without '%%', '*', '?', '#', '\\', '//', '.' or '..' segments", s.PathPrefix)
	}
	v.name("spec.service", s.Service)
	switch s.Auth.APIKey {
	case APIKeyRequired, APIKeyOptional, APIKeyNone:
	default:
		v.errorf("spec.auth.apiKey", "unknown requirement %q (want required, optional or none)", s.Auth.APIKey)
	}
	switch s.Auth.User {
	case UserJWT, UserMTLS, UserAnonymous:
	default:
		v.errorf("spec.auth.user", "unknown user credential %q (want jwt, mtls or anonymous)", s.Auth.User)
	}
	if s.Auth.User != UserJWT && len(s.Auth.Issuers) > 0 {
		v.errorf("spec.auth.issuers", "issuers apply only to user: jwt")
	}
	for i, name := range s.Auth.Issuers {
		v.name(fmt.Sprintf("spec.auth.issuers[%d]", i), name)
	}
	s.Limits.validate(v)
	s.WAF.validate(v)
	if s.RateLimit != (RouteRateLimit{}) {
		if s.RateLimit.Rate == "" {
			v.errorf("spec.rateLimit.rate", "required: COUNT/PERIOD such as 100/s")
		} else if r, err := ratelimit.ParseRate(s.RateLimit.Rate); err != nil {
			v.errorf("spec.rateLimit.rate", "%s", strings.TrimPrefix(err.Error(), "ratelimit: "))
		} else if err := (ratelimit.Limit{Rate: r, Burst: s.RateLimit.Burst}).Validate(); err != nil {
			v.errorf("spec.rateLimit.burst", "%s", strings.TrimPrefix(err.Error(), "ratelimit: "))
		}
		parts := strings.Split(s.RateLimit.Key, "+")
		for _, p := range parts {
			if !slices.Contains(rateKeyKinds, p) || len(parts) > 2 {
				v.errorf("spec.rateLimit.key", "invalid key %q: one of %s, or two joined with '+'", s.RateLimit.Key, strings.Join(rateKeyKinds, ", "))
				break
			}
		}
	}
}

func isHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if !isName(label) {
			return false
		}
	}
	return true
}

func (s *IssuerSpec) validate(v validator) {
	checkFetchURL(v, "spec.issuerURL", s.IssuerURL, true)
	if s.JWKSURL != "" {
		checkFetchURL(v, "spec.jwksURL", s.JWKSURL, false)
	}
	if len(s.Audiences) == 0 {
		v.errorf("spec.audiences", "required: the audiences a token must name (aud)")
	}
	for i, a := range s.Audiences {
		if a == "" {
			v.errorf(fmt.Sprintf("spec.audiences[%d]", i), "empty audience")
		}
	}
	for i, a := range s.Algorithms {
		if !slices.Contains(issuerAlgorithms, a) {
			v.errorf(fmt.Sprintf("spec.algorithms[%d]", i), "algorithm %q not allowed (allowed: %s; none and HMAC never are)", a, strings.Join(issuerAlgorithms, ", "))
		}
	}
	if d, err := time.ParseDuration(s.Leeway); err != nil || d < 0 || d > 5*time.Minute {
		v.errorf("spec.leeway", "invalid leeway %q: a Go duration from 0s to 5m", s.Leeway)
	}
}

// checkFetchURL checks a URL the gateway fetches keys from: https, or
// plain http on a loopback address (a local identity provider; nothing
// leaves the host).
func checkFetchURL(v validator, path, raw string, required bool) {
	if raw == "" {
		if required {
			v.errorf(path, "required")
		}
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || u.RawQuery != "" {
		v.errorf(path, "invalid URL %q: want https://host/path without credentials, query or fragment", raw)
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopbackHost(u.Hostname()) {
			v.errorf(path, "URL %q must be https (plain http only on a loopback address)", raw)
		}
	default:
		v.errorf(path, "URL %q must be https", raw)
	}
}

// IsLoopbackHost reports whether host is "localhost" or a loopback IP.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkRoutes checks a Route's references and that no two Routes answer
// the same host and prefix.
func checkRoutes(objs []Object, errs *ErrorList, has func(kind, name string) bool) {
	type match struct{ host, prefix string }
	seen := map[match]*Object{}
	for i := range objs {
		o := &objs[i]
		r, ok := o.Spec.(*RouteSpec)
		if !ok || o.Kind != KindRoute {
			continue
		}
		v := validator{o, errs}
		if !has(KindService, r.Service) {
			v.errorf("spec.service", "no Service named %q", r.Service)
		}
		for j, name := range r.Auth.Issuers {
			if !has(KindIssuer, name) {
				v.errorf(fmt.Sprintf("spec.auth.issuers[%d]", j), "no Issuer named %q", name)
			}
		}
		m := match{r.Host, r.PathPrefix}
		if prev := seen[m]; prev != nil {
			v.errorf("spec.pathPrefix", "Route %q already answers host %q and prefix %s (%s)", prev.Metadata.Name, r.Host, r.PathPrefix, prev.Origin.at("metadata.name"))
		} else {
			seen[m] = o
		}
	}
}
