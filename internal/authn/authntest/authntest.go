// Package authntest provides a fake OIDC identity provider and token
// crafting helpers for tests of Ward's authentication: honest tokens signed
// with go-jose, and hand-made hostile ones (alg none, HMAC key confusion,
// forged headers) that no library would produce.
package authntest

import (
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// IDP is a fake OIDC provider on 127.0.0.1: discovery plus a JWKS that
// tests can replace, counting requests per path. URL is its issuer URL.
type IDP struct {
	URL  string
	srv  *httptest.Server
	mu   sync.Mutex
	jwks jose.JSONWebKeySet
	hits sync.Map // path -> *atomic.Int64
}

// NewIDP starts a provider serving keys; it stops when the test ends.
func NewIDP(t testing.TB, keys ...jose.JSONWebKey) *IDP {
	t.Helper()
	p := &IDP{}
	p.SetKeys(keys...)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := p.hits.LoadOrStore(r.URL.Path, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": p.URL, "jwks_uri": p.URL + "/jwks"})
		case "/jwks":
			p.mu.Lock()
			defer p.mu.Unlock()
			_ = json.NewEncoder(w).Encode(p.jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	p.URL = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

// SetKeys replaces the published key set.
func (p *IDP) SetKeys(keys ...jose.JSONWebKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jwks = jose.JSONWebKeySet{Keys: keys}
}

// Count returns how many requests reached path.
func (p *IDP) Count(path string) int64 {
	n, ok := p.hits.Load(path)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// PubJWK is the public JWK of key.
func PubJWK(key crypto.Signer, kid, alg string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: key.Public(), KeyID: kid, Algorithm: alg, Use: "sig"}
}

// Sign signs claims with go-jose, the way an honest issuer would.
func Sign(t testing.TB, key crypto.Signer, alg, kid string, extra map[jose.HeaderKey]any, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{}}
	if kid != "" {
		opts.ExtraHeaders["kid"] = kid
	}
	for k, v := range extra {
		opts.ExtraHeaders[k] = v
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// B64 is unpadded base64url.
func B64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// B64JSON is the unpadded base64url of v's JSON.
func B64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return B64(b)
}

// Craft builds a compact JWS by hand: header and claims as given, signature
// bytes as given (nil: empty).
func Craft(t testing.TB, header map[string]any, claims map[string]any, sig []byte) string {
	return B64JSON(t, header) + "." + B64JSON(t, claims) + "." + B64(sig)
}

// HMACToken signs with HS256 using secret: the classic key-confusion attack
// when secret is the issuer's public key.
func HMACToken(t testing.TB, kid string, secret []byte, claims map[string]any) string {
	signingInput := B64JSON(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid}) + "." + B64JSON(t, claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signingInput))
	return signingInput + "." + B64(m.Sum(nil))
}
