package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Verifier limits and intervals.
const (
	// MaxTokenSize is the longest bearer token accepted.
	MaxTokenSize = 8 << 10
	// maxJWKSSize bounds discovery documents and key sets.
	maxJWKSSize = 1 << 20
	// maxJWKSKeys bounds the keys kept from one key set.
	maxJWKSKeys = 64
	// minRSABits is the smallest RSA modulus accepted from a key set.
	minRSABits = 2048

	defaultMinRefresh   = 30 * time.Second
	defaultRefreshEvery = 15 * time.Minute
	defaultFetchTimeout = 10 * time.Second
)

// Option configures a [Verifier].
type Option func(*Verifier)

// WithHTTPClient fetches discovery documents and key sets with c (a copy of
// it: the Verifier installs its own redirect check).
func WithHTTPClient(c *http.Client) Option { return func(v *Verifier) { cc := *c; v.client = &cc } }

// WithInsecureLoopbackHTTP allows plain-http issuer and JWKS URLs whose host
// is a loopback IP address. For tests and local demos only.
func WithInsecureLoopbackHTTP() Option { return func(v *Verifier) { v.loopbackHTTP = true } }

// WithClock replaces time.Now for token time checks.
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// WithLogger sets the logger for key-set fetch failures.
func WithLogger(l *slog.Logger) Option { return func(v *Verifier) { v.log = l } }

// WithRefresh sets how often [Verifier.Run] refreshes key sets (default 15m)
// and the least time between two fetches triggered by unknown kids
// (default 30s).
func WithRefresh(every, minInterval time.Duration) Option {
	return func(v *Verifier) { v.refreshEvery, v.minRefresh = every, minInterval }
}

// Verifier checks JWT bearer tokens against a fixed set of issuers. It is
// safe for concurrent use; build a new one when the Issuer resources change.
//
// What it never does: accept "none" or HMAC algorithms, follow jku, x5u,
// x5c or jwk from a token header, use kid for anything but a map lookup, or
// let a key verify an algorithm of another family.
type Verifier struct {
	issuers      []*issuerState
	client       *http.Client
	loopbackHTTP bool
	now          func() time.Time
	log          *slog.Logger
	refreshEvery time.Duration
	minRefresh   time.Duration
}

type issuerState struct {
	cfg  Issuer
	keys atomic.Pointer[keySet]

	fetchMu     sync.Mutex // serializes fetches; guards the fields below
	lastAttempt time.Time
	jwksURL     string // discovered once, then reused
}

type keySet struct {
	byKID map[string][]jose.JSONWebKey
	all   []jose.JSONWebKey
}

// NewVerifier validates the issuers (after defaults) and returns a
// Verifier. Keys are fetched lazily on first use and by [Verifier.Run].
func NewVerifier(issuers []Issuer, opts ...Option) (*Verifier, error) {
	v := &Verifier{
		now:          time.Now,
		log:          slog.Default(),
		refreshEvery: defaultRefreshEvery,
		minRefresh:   defaultMinRefresh,
	}
	for _, o := range opts {
		o(v)
	}
	if v.client == nil {
		// Its own pool, not http.DefaultTransport's: Run closes the idle
		// connections of its client when it ends, which must be only the
		// verifier's own.
		v.client = &http.Client{Timeout: defaultFetchTimeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	v.client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 3 {
			return errors.New("too many redirects")
		}
		return checkFetchURL(req.URL.String(), v.loopbackHTTP)
	}
	if len(issuers) == 0 {
		return nil, errors.New("no issuers")
	}
	names := map[string]bool{}
	urls := map[string]bool{}
	for _, iss := range issuers {
		cfg := iss.WithDefaults()
		if err := cfg.validate(v.loopbackHTTP); err != nil {
			return nil, err
		}
		if names[cfg.Name] || urls[cfg.IssuerURL] {
			return nil, fmt.Errorf("issuer %q: duplicate name or issuer URL", cfg.Name)
		}
		names[cfg.Name], urls[cfg.IssuerURL] = true, true
		v.issuers = append(v.issuers, &issuerState{cfg: cfg, jwksURL: cfg.JWKSURL})
	}
	return v, nil
}

// Run refreshes every issuer's key set now and then every refresh interval
// until ctx ends. Fetch failures are logged and the previous keys kept.
func (v *Verifier) Run(ctx context.Context) error {
	defer v.client.CloseIdleConnections()
	t := time.NewTicker(v.refreshEvery)
	defer t.Stop()
	for {
		for _, st := range v.issuers {
			v.refresh(ctx, st, true)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// tokenHeader is the part of the JOSE header decoded before go-jose sees the
// token, only to classify a rejection.
type tokenHeader struct {
	Alg string `json:"alg"`
}

// Verify checks token (the bearer value, without "Bearer ") and returns the
// user's Principal: User, Issuer, Claims and Scopes. If issuers are given
// (names, as a Route lists them), the token's issuer must be one of them.
func (v *Verifier) Verify(ctx context.Context, token string, issuers ...string) (Principal, error) {
	if len(token) > MaxTokenSize {
		return Principal{}, fail(ReasonJWTTooLarge, fmt.Sprintf("%d bytes, limit %d", len(token), MaxTokenSize), nil)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Principal{}, fail(ReasonJWTMalformed, "not a compact JWS", nil)
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return Principal{}, fail(ReasonJWTMalformed, "header is not base64url", nil)
	}
	var hdr tokenHeader
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return Principal{}, fail(ReasonJWTMalformed, "header is not a JSON object", nil)
	}
	if !slices.Contains(supportedAlgorithms, hdr.Alg) {
		return Principal{}, fail(ReasonJWTAlgNotAllowed, fmt.Sprintf("alg %.16q", hdr.Alg), nil)
	}
	if parts[2] == "" {
		return Principal{}, fail(ReasonJWTBadSignature, "empty signature", nil)
	}
	// From here on go-jose's parse is authoritative; the algorithm it may
	// accept is the one already checked.
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(hdr.Alg)})
	if err != nil || len(tok.Headers) != 1 {
		return Principal{}, fail(ReasonJWTMalformed, "cannot parse JWS", err)
	}
	h := tok.Headers[0]
	alg := h.Algorithm
	// The claims are decoded before the signature is checked only to pick
	// the issuer; nothing is trusted until a key has verified them.
	var std jwt.Claims
	var raw map[string]any
	if err := tok.UnsafeClaimsWithoutVerification(&std, &raw); err != nil || raw == nil {
		return Principal{}, fail(ReasonJWTMalformed, "claims are not a JSON object", err)
	}
	st := v.issuer(std.Issuer, issuers)
	if st == nil {
		return Principal{}, fail(ReasonJWTWrongIssuer, fmt.Sprintf("iss %.100q is not trusted here", std.Issuer), nil)
	}
	if !slices.Contains(st.cfg.Algorithms, alg) {
		return Principal{}, fail(ReasonJWTAlgNotAllowed, fmt.Sprintf("alg %s not allowed for issuer %s", alg, st.cfg.Name), nil)
	}

	keys, err := v.keysFor(ctx, st, h.KeyID, alg)
	if err != nil {
		return Principal{}, err
	}
	verified := false
	for _, k := range keys {
		if err := tok.Claims(k.Key); err == nil { // verifies the same payload decoded above
			verified = true
			break
		}
	}
	if !verified {
		return Principal{}, fail(ReasonJWTBadSignature, "issuer "+st.cfg.Name, nil)
	}

	if std.Expiry == nil {
		return Principal{}, fail(ReasonJWTMissingClaim, "exp is required", nil)
	}
	if std.Subject == "" {
		return Principal{}, fail(ReasonJWTMissingClaim, "sub is required", nil)
	}
	exp := jwt.Expected{Issuer: st.cfg.IssuerURL, AnyAudience: st.cfg.Audiences, Time: v.now()}
	if err := std.ValidateWithLeeway(exp, st.cfg.Leeway); err != nil {
		switch {
		case errors.Is(err, jwt.ErrInvalidIssuer):
			return Principal{}, fail(ReasonJWTWrongIssuer, "issuer "+st.cfg.Name, nil)
		case errors.Is(err, jwt.ErrInvalidAudience):
			return Principal{}, fail(ReasonJWTWrongAudience, "issuer "+st.cfg.Name, nil)
		case errors.Is(err, jwt.ErrExpired):
			return Principal{}, fail(ReasonJWTExpired, "issuer "+st.cfg.Name, nil)
		case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
			return Principal{}, fail(ReasonJWTNotYetValid, "issuer "+st.cfg.Name, nil)
		default:
			return Principal{}, fail(ReasonJWTMalformed, "issuer "+st.cfg.Name, err)
		}
	}
	return Principal{
		User:   std.Subject,
		Issuer: std.Issuer,
		Claims: raw,
		Scopes: scopesOf(raw),
	}, nil
}

func (v *Verifier) issuer(iss string, allowed []string) *issuerState {
	for _, st := range v.issuers {
		if st.cfg.IssuerURL == iss && (len(allowed) == 0 || slices.Contains(allowed, st.cfg.Name)) {
			return st
		}
	}
	return nil
}

// keysFor returns the issuer's keys that may verify alg under kid (all
// fitting keys when the token names no kid). On a miss it refreshes the key
// set, at most once per minRefresh per issuer.
func (v *Verifier) keysFor(ctx context.Context, st *issuerState, kid, alg string) ([]jose.JSONWebKey, error) {
	ks := st.keys.Load()
	if ks == nil || len(ks.candidates(kid, alg)) == 0 {
		v.refresh(ctx, st, false)
		ks = st.keys.Load()
	}
	if ks == nil {
		return nil, fail(ReasonJWTKeysUnavailable, "issuer "+st.cfg.Name, nil)
	}
	keys := ks.candidates(kid, alg)
	if len(keys) == 0 {
		return nil, fail(ReasonJWTUnknownKey, fmt.Sprintf("issuer %s, kid %.64q, alg %s", st.cfg.Name, kid, alg), nil)
	}
	return keys, nil
}

func (ks *keySet) candidates(kid, alg string) []jose.JSONWebKey {
	pool := ks.all
	if kid != "" {
		pool = ks.byKID[kid] // a map lookup: kid is never a path or URL
	}
	var out []jose.JSONWebKey
	for _, k := range pool {
		if (k.Algorithm == "" || k.Algorithm == alg) && keyFitsAlg(k.Key, alg) {
			out = append(out, k)
		}
	}
	return out
}

// keyFitsAlg reports whether a public key may verify alg: RSA keys only
// RS*/PS*, EC keys only the ES* of their curve, Ed25519 only EdDSA. Nothing
// fits HMAC.
func keyFitsAlg(key any, alg string) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// refresh fetches st's key set. Unless force is set it does nothing when the
// last attempt is more recent than minRefresh, so a flood of tokens with
// made-up kids costs the issuer at most one fetch per interval. Concurrent
// callers wait for one fetch instead of each starting their own.
func (v *Verifier) refresh(ctx context.Context, st *issuerState, force bool) {
	st.fetchMu.Lock()
	defer st.fetchMu.Unlock()
	now := time.Now()
	if !force && !st.lastAttempt.IsZero() && now.Sub(st.lastAttempt) < v.minRefresh {
		return
	}
	st.lastAttempt = now
	ks, err := v.fetchKeys(ctx, st)
	if err != nil {
		v.log.Warn("jwks fetch failed", "issuer", st.cfg.Name, "err", err)
		return
	}
	st.keys.Store(ks)
}

type discoveryDoc struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// fetchKeys must be called with st.fetchMu held.
func (v *Verifier) fetchKeys(ctx context.Context, st *issuerState) (*keySet, error) {
	if st.jwksURL == "" {
		var doc discoveryDoc
		if err := v.getJSON(ctx, strings.TrimSuffix(st.cfg.IssuerURL, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		if doc.Issuer != st.cfg.IssuerURL {
			return nil, fmt.Errorf("discovery: issuer %q does not match %q", doc.Issuer, st.cfg.IssuerURL)
		}
		if err := checkFetchURL(doc.JWKSURI, v.loopbackHTTP); err != nil {
			return nil, fmt.Errorf("discovery: jwks_uri: %w", err)
		}
		st.jwksURL = doc.JWKSURI
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := v.getJSON(ctx, st.jwksURL, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	ks := &keySet{byKID: map[string][]jose.JSONWebKey{}}
	for _, raw := range set.Keys {
		if len(ks.all) == maxJWKSKeys {
			break
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue // an unsupported key type must not hide the others
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		k = k.Public() // drops private parts; symmetric keys become invalid
		if !k.Valid() {
			continue
		}
		if rk, ok := k.Key.(*rsa.PublicKey); ok && rk.N.BitLen() < minRSABits {
			continue
		}
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			continue
		}
		k.Certificates = nil
		ks.all = append(ks.all, k)
		ks.byKID[k.KeyID] = append(ks.byKID[k.KeyID], k)
	}
	if len(ks.all) == 0 {
		return nil, errors.New("jwks: no usable signing keys")
	}
	return ks, nil
}

func (v *Verifier) getJSON(ctx context.Context, u string, dst any) error {
	if err := checkFetchURL(u, v.loopbackHTTP); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, defaultFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxJWKSSize {
		return fmt.Errorf("GET %s: response larger than %d bytes", u, maxJWKSSize)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// scopesOf reads OAuth scopes from "scope" (space-separated, RFC 8693) or
// "scp" (an array, or a space-separated string as some issuers send).
func scopesOf(claims map[string]any) []string {
	if s, ok := claims["scope"].(string); ok {
		return strings.Fields(s)
	}
	switch scp := claims["scp"].(type) {
	case string:
		return strings.Fields(scp)
	case []any:
		var out []string
		for _, x := range scp {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
