package authn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/wardsec/ward/internal/authn/authntest"
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

// idp is the fake OIDC provider of package authntest.
type idp = authntest.IDP

func newIDP(t testing.TB, keys ...jose.JSONWebKey) *idp { return authntest.NewIDP(t, keys...) }

func pubJWK(key crypto.Signer, kid, alg string) jose.JSONWebKey {
	return authntest.PubJWK(key, kid, alg)
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
	iss := Issuer{Name: "corp", IssuerURL: p.URL, Audiences: []string{testAudience}}
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
		"iss":   p.URL,
		"sub":   "alice",
		"aud":   []string{testAudience},
		"exp":   testNow.Add(5 * time.Minute).Unix(),
		"iat":   testNow.Add(-time.Minute).Unix(),
		"nbf":   testNow.Add(-time.Minute).Unix(),
		"scope": "orders:read orders:write",
	}
}

func sign(t testing.TB, key crypto.Signer, alg, kid string, extra map[jose.HeaderKey]any, claims map[string]any) string {
	t.Helper()
	return authntest.Sign(t, key, alg, kid, extra, claims)
}

func b64(b []byte) string { return authntest.B64(b) }

func b64json(t testing.TB, v any) string { t.Helper(); return authntest.B64JSON(t, v) }

func craft(t testing.TB, header map[string]any, claims map[string]any, sig []byte) string {
	return authntest.Craft(t, header, claims, sig)
}

func hmacToken(t testing.TB, kid string, secret []byte, claims map[string]any) string {
	return authntest.HMACToken(t, kid, secret, claims)
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
