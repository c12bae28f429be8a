package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/wardsec/ward/internal/proxy"
)

// issuer is the demo's OpenID Connect provider on loopback: a discovery
// document and a JWKS over plain HTTP (which Ward accepts for loopback
// issuers only), and one ES256 key that signs the demo users' tokens.
type issuer struct {
	url string
	key *ecdsa.PrivateKey
	ln  net.Listener
	srv *http.Server
}

const (
	issuerKeyID    = "demo-1"
	issuerAudience = "ward-demo"
)

// newIssuer binds a loopback port; Run serves it.
func newIssuer() (*issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("identity provider: %w", err)
	}
	i := &issuer{url: "http://" + ln.Addr().String(), key: key, ln: ln}
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: issuerKeyID, Algorithm: string(jose.ES256), Use: "sig"}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer": i.url, "jwks_uri": i.url + "/jwks", "id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, jwks) })
	i.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return i, nil
}

// Run serves until ctx ends.
func (i *issuer) Run(ctx context.Context) error { return proxy.Serve(ctx, i.srv, i.ln) }

// mint signs an access token for sub with the given space-separated scopes.
func (i *issuer) mint(sub, scope string, ttl time.Duration) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: i.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", issuerKeyID))
	if err != nil {
		return "", err
	}
	now := time.Now()
	claims, err := json.Marshal(map[string]any{
		"iss": i.url, "sub": sub, "aud": issuerAudience, "scope": scope,
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(ttl).Unix(),
	})
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(claims)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
