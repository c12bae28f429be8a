// Package idtoken is the identity token a Ward gateway sends with each
// request it forwards into the mesh: a short-lived JWS (ES256) signed with
// the gateway's own X.509-SVID key, naming the verified application and
// user, for exactly one target service (aud). The receiving sidecar checks
// it against the trust bundle and hands the identity to its app, so that
// services can re-check what the user may do without ever seeing the
// caller's original credential (API key, bearer token).
//
// The signer's certificate travels in the x5c header and is verified with
// the mesh's trust bundle (identity.Bundle), never with certificates or URLs
// from elsewhere: the token is only as trusted as the SVID that signed it.
// A sidecar further accepts a token only from the peer that sent it over
// mutual TLS, so a service that receives a token cannot replay it.
package idtoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/identity"
)

// Header is the request header that carries the token.
const Header = "X-Ward-Identity"

// Limits.
const (
	// MaxLifetime bounds exp - iat of an accepted token.
	MaxLifetime = 5 * time.Minute
	// MaxSize bounds an accepted token's length.
	MaxSize = 8 << 10
	// leeway tolerates clock skew between gateway and sidecar hosts.
	leeway = 5 * time.Second
)

// Claims are what a token asserts. Scopes and App may be empty; a caller
// without a user credential has Anonymous set instead of Subject.
type Claims struct {
	Signer     string   `json:"iss"`                // the gateway's SPIFFE ID
	Audience   string   `json:"aud"`                // the target service's SPIFFE ID
	Subject    string   `json:"sub,omitempty"`      // the user
	UserIssuer string   `json:"user_iss,omitempty"` // who vouched for the user (token issuer URL, or "mtls")
	App        string   `json:"app,omitempty"`      // the application (API key owner)
	Anonymous  string   `json:"anon,omitempty"`     // the anonymous id of an unidentified caller
	Scopes     []string `json:"scopes,omitempty"`   // the user's OAuth scopes
	IssuedAt   int64    `json:"iat"`
	Expiry     int64    `json:"exp"`
}

// User returns the claims as the "user" variable of policy conditions:
// sub, iss, app, anonymous and scopes.
func (c *Claims) User() map[string]any {
	scopes := make([]any, len(c.Scopes))
	for i, s := range c.Scopes {
		scopes[i] = s
	}
	return map[string]any{"sub": c.Subject, "iss": c.UserIssuer, "app": c.App, "anonymous": c.Anonymous, "scopes": scopes}
}

// Sign returns a compact JWS of c signed by svid. Signer, IssuedAt and
// Expiry are set from svid, now and ttl.
func Sign(svid *identity.SVID, c Claims, now time.Time, ttl time.Duration) (string, error) {
	if _, ok := svid.Key.Public().(*ecdsa.PublicKey); !ok {
		return "", fmt.Errorf("idtoken: SVID key is %T, want ECDSA P-256", svid.Key.Public())
	}
	c.Signer = svid.ID.String()
	c.IssuedAt = now.Unix()
	c.Expiry = now.Add(ttl).Unix()
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{}).WithType("ward-id+jwt").
		WithHeader("x5c", []string{base64.StdEncoding.EncodeToString(svid.Leaf().Raw)})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: svid.Key}, opts)
	if err != nil {
		return "", fmt.Errorf("idtoken: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("idtoken: %w", err)
	}
	return jws.CompactSerialize()
}

// Verifier checks tokens addressed to one service.
type Verifier struct {
	// Audience is the receiving service's SPIFFE ID.
	Audience spiffeid.ID
	// Bundle returns the current trust bundle.
	Bundle func() *identity.Bundle
	// Revoked reports whether a certificate serial (lowercase hex) is
	// revoked; nil: none is.
	Revoked func(serial string) bool

	// cache remembers verified tokens until they expire, so a gateway's
	// token (reused for many requests of one caller) costs one signature
	// check. Keyed by the SHA-256 of the whole token.
	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	claims Claims
	serial string
}

// maxCache bounds the verified-token cache.
const maxCache = 4096

// Errors of Verify; each wraps the detail.
var (
	ErrMalformed = errors.New("identity token malformed")
	ErrSigner    = errors.New("identity token signer not trusted")
	ErrSignature = errors.New("identity token signature invalid")
	ErrClaims    = errors.New("identity token claims invalid")
)

// Verify checks token at time now: the signer's certificate is a valid,
// unrevoked SVID of the bundle, its SPIFFE ID equals peer (the mutual-TLS
// caller that sent the token) and is a gateway's (spiffe://TD/gateway/...),
// the signature verifies with it, aud is v.Audience, and now is within
// [iat-leeway, exp+leeway] with exp-iat at most MaxLifetime.
func (v *Verifier) Verify(token string, peer spiffeid.ID, now time.Time) (*Claims, error) {
	if len(token) > MaxSize {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxSize)
	}
	key := sha256.Sum256([]byte(token))
	v.mu.Lock()
	hit, ok := v.cache[key]
	v.mu.Unlock()
	if ok {
		if err := v.checkClaims(&hit.claims, peer, now); err != nil {
			return nil, err
		}
		if v.Revoked != nil && v.Revoked(hit.serial) {
			return nil, fmt.Errorf("%w: signer certificate %s is revoked", ErrSigner, hit.serial)
		}
		c := hit.claims
		return &c, nil
	}
	c, serial, err := v.verify(token, peer, now)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if v.cache == nil {
		v.cache = map[[32]byte]cached{}
	}
	if len(v.cache) >= maxCache {
		for k, e := range v.cache { // drop the expired, or else everything
			if now.Unix() > e.claims.Expiry+int64(leeway/time.Second) || len(v.cache) >= maxCache {
				delete(v.cache, k)
			}
		}
	}
	v.cache[key] = cached{claims: *c, serial: serial}
	v.mu.Unlock()
	return c, nil
}

func (v *Verifier) verify(token string, peer spiffeid.ID, now time.Time) (*Claims, string, error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, "", fmt.Errorf("%w: want one signature", ErrMalformed)
	}
	leaf, err := signerCert(token)
	if err != nil {
		return nil, "", err
	}
	bundle := v.Bundle()
	if bundle == nil {
		return nil, "", fmt.Errorf("%w: no trust bundle", ErrSigner)
	}
	id, err := bundle.VerifySVID(leaf, now)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrSigner, err)
	}
	serial := leaf.SerialNumber.Text(16)
	if v.Revoked != nil && v.Revoked(serial) {
		return nil, "", fmt.Errorf("%w: signer certificate %s is revoked", ErrSigner, serial)
	}
	if !isGateway(id) {
		return nil, "", fmt.Errorf("%w: %s is not a gateway", ErrSigner, id)
	}
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, "", fmt.Errorf("%w: signer key is not ECDSA", ErrSigner)
	}
	payload, err := jws.Verify(leaf.PublicKey.(crypto.PublicKey))
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrSignature, err)
	}
	var c Claims
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if c.Signer != id.String() {
		return nil, "", fmt.Errorf("%w: iss %q is not the signer %s", ErrClaims, c.Signer, id)
	}
	if err := v.checkClaims(&c, peer, now); err != nil {
		return nil, "", err
	}
	return &c, serial, nil
}

// checkClaims checks what depends on the request and the time.
func (v *Verifier) checkClaims(c *Claims, peer spiffeid.ID, now time.Time) error {
	switch {
	case c.Signer != peer.String():
		return fmt.Errorf("%w: signed by %s but sent by %s", ErrSigner, c.Signer, peer)
	case c.Audience != v.Audience.String():
		return fmt.Errorf("%w: aud %q, want %s", ErrClaims, c.Audience, v.Audience)
	case c.Expiry < c.IssuedAt || time.Duration(c.Expiry-c.IssuedAt)*time.Second > MaxLifetime:
		return fmt.Errorf("%w: lifetime over %s", ErrClaims, MaxLifetime)
	case now.Add(leeway).Unix() < c.IssuedAt:
		return fmt.Errorf("%w: issued in the future", ErrClaims)
	case now.Add(-leeway).Unix() > c.Expiry:
		return fmt.Errorf("%w: expired", ErrClaims)
	}
	return nil
}

// isGateway reports whether id names a gateway (spiffe://TD/gateway/NAME).
func isGateway(id spiffeid.ID) bool {
	name, ok := strings.CutPrefix(id.Path(), "/gateway/")
	return ok && name != "" && !strings.Contains(name, "/")
}

// signerCert reads the leaf certificate from the token's protected x5c
// header. go-jose would verify x5c chains against x509 roots of its own;
// Ward verifies the leaf with its trust bundle instead (bundle intermediates
// only, SPIFFE ID shape), so the header is read here.
func signerCert(token string) (*x509.Certificate, error) {
	h, _, ok := strings.Cut(token, ".")
	if !ok {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	var hdr struct {
		X5C []string `json:"x5c"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if len(hdr.X5C) != 1 {
		return nil, fmt.Errorf("%w: x5c must hold exactly the signer's certificate", ErrMalformed)
	}
	der, err := base64.StdEncoding.DecodeString(hdr.X5C[0])
	if err != nil {
		return nil, fmt.Errorf("%w: x5c: %v", ErrMalformed, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: x5c: %v", ErrMalformed, err)
	}
	return leaf, nil
}
