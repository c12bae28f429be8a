package authn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const testAudience = "ward-edge"

// loadKey reads a PKCS#8 test key from testdata.
func loadKey(t testing.TB, name string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}

func testKeys(t testing.TB) (*rsa.PrivateKey, *ecdsa.PrivateKey) {
	return loadKey(t, "rsa.pem").(*rsa.PrivateKey), loadKey(t, "ec.pem").(*ecdsa.PrivateKey)
}

// idp is a fake OIDC provider on 127.0.0.1: discovery plus a JWKS that tests
// can replace, counting requests per path.
type idp struct {
	srv  *httptest.Server
	mu   sync.Mutex
	jwks jose.JSONWebKeySet
	hits sync.Map // path -> *atomic.Int64
}

func newIDP(t testing.TB, keys ...jose.JSONWebKey) *idp {
	t.Helper()
	p := &idp{}
	p.setKeys(keys...)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := p.hits.LoadOrStore(r.URL.Path, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/jwks"})
		case "/jwks":
			p.mu.Lock()
			defer p.mu.Unlock()
			_ = json.NewEncoder(w).Encode(p.jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) setKeys(keys ...jose.JSONWebKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jwks = jose.JSONWebKeySet{Keys: keys}
}

func (p *idp) count(path string) int64 {
	n, ok := p.hits.Load(path)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

func pubJWK(key crypto.Signer, kid, alg string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: key.Public(), KeyID: kid, Algorithm: alg, Use: "sig"}
}

// testClient has its own transport so tests can close idle connections
// (goleak).
func testClient(t testing.TB) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestVerifier(t testing.TB, p *idp, mod func(*Issuer), opts ...Option) *Verifier {
	t.Helper()
	iss := Issuer{Name: "corp", IssuerURL: p.srv.URL, Audiences: []string{testAudience}}
	if mod != nil {
		mod(&iss)
	}
	opts = append([]Option{WithInsecureLoopbackHTTP(), WithHTTPClient(testClient(t)), WithClock(func() time.Time { return testNow })}, opts...)
	v, err := NewVerifier([]Issuer{iss}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// claimsFor returns valid claims for p at testNow.
func claimsFor(p *idp) map[string]any {
	return map[string]any{
		"iss":   p.srv.URL,
		"sub":   "alice",
		"aud":   []string{testAudience},
		"exp":   testNow.Add(5 * time.Minute).Unix(),
		"iat":   testNow.Add(-time.Minute).Unix(),
		"nbf":   testNow.Add(-time.Minute).Unix(),
		"scope": "orders:read orders:write",
	}
}

// sign signs claims with go-jose, the way an honest issuer would.
func sign(t testing.TB, key crypto.Signer, alg, kid string, extra map[jose.HeaderKey]any, claims map[string]any) string {
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

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64json(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// craft builds a compact JWS by hand: header and claims as given, signature
// bytes as given (nil: empty).
func craft(t testing.TB, header map[string]any, claims map[string]any, sig []byte) string {
	return b64json(t, header) + "." + b64json(t, claims) + "." + b64(sig)
}

// hmacToken signs with HS256 using secret, the classic key-confusion attack
// when secret is the issuer's public key.
func hmacToken(t testing.TB, kid string, secret []byte, claims map[string]any) string {
	signingInput := b64json(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid}) + "." + b64json(t, claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signingInput))
	return signingInput + "." + b64(m.Sum(nil))
}

func publicPEM(t testing.TB, pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func assertReason(t testing.TB, err error, want string, secret string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want %s", want)
	}
	if got := ReasonOf(err); got != want {
		t.Fatalf("reason %q (%v), want %q", got, err, want)
	}
	if secret != "" && strings.Contains(err.Error(), secret) {
		t.Fatalf("error echoes the credential: %v", err)
	}
	if secret != "" {
		if parts := strings.Split(secret, "."); len(parts) == 3 && len(parts[2]) >= 8 && strings.Contains(err.Error(), parts[2]) {
			t.Fatalf("error echoes the signature: %v", err)
		}
	}
}
