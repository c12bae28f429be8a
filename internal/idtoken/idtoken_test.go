package idtoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/identity"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// testCA is a root that issues SVIDs.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	bundle *identity.Bundle
	serial int64
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	b, err := identity.NewBundle(td, []*x509.Certificate{cert})
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, bundle: b, serial: 1}
}

func (ca *testCA) svid(t testing.TB, path string) *identity.SVID {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://" + td.Name() + path)
	ca.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	s, err := identity.NewSVID([]*x509.Certificate{cert}, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignVerify(t *testing.T) {
	ca := newTestCA(t)
	gw := ca.svid(t, "/gateway/edge")
	orders := spiffeid.RequireFromString("spiffe://example.org/svc/orders")
	now := time.Now()
	claims := Claims{Audience: orders.String(), Subject: "alice", UserIssuer: "https://idp", App: "shop", Scopes: []string{"orders:read"}}
	tok, err := Sign(gw, claims, now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	revoked := map[string]bool{}
	v := &Verifier{Audience: orders, Bundle: func() *identity.Bundle { return ca.bundle }, Revoked: func(s string) bool { return revoked[s] }}
	for range 2 { // the second time from the cache
		c, err := v.Verify(tok, gw.ID, now)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if c.Subject != "alice" || c.App != "shop" || c.Signer != gw.ID.String() || len(c.Scopes) != 1 {
			t.Fatalf("claims %+v", c)
		}
		if u := c.User(); u["sub"] != "alice" || u["app"] != "shop" {
			t.Fatalf("User() = %v", u)
		}
	}

	catalog := ca.svid(t, "/svc/catalog")
	other := ca.svid(t, "/gateway/other")
	foreign := newTestCA(t).svid(t, "/gateway/edge")
	fromCatalog, _ := Sign(catalog, claims, now, time.Minute)
	fromForeign, _ := Sign(foreign, claims, now, time.Minute)
	otherAud := claims
	otherAud.Audience = "spiffe://example.org/svc/catalog"
	wrongAud, _ := Sign(gw, otherAud, now, time.Minute)
	long, _ := Sign(gw, claims, now, time.Hour)
	parts := strings.Split(tok, ".")
	tamperedPayload := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+gw.ID.String()+`","aud":"`+orders.String()+`","sub":"mallory","iat":1,"exp":9999999999}`)) + "." + parts[2]
	noSig := parts[0] + "." + parts[1] + "."
	// A header whose x5c names another gateway's certificate.
	swapped := strings.Replace(tok, parts[0], strings.Split(mustSign(t, other, claims, now), ".")[0], 1)

	tests := []struct {
		name  string
		token string
		peer  spiffeid.ID
		at    time.Time
		want  error
	}{
		{"sent by another peer (replay)", tok, catalog.ID, now, ErrSigner},
		{"signed by a service, not a gateway", fromCatalog, catalog.ID, now, ErrSigner},
		{"signed by a foreign CA", fromForeign, gw.ID, now, ErrSigner},
		{"wrong audience", wrongAud, gw.ID, now, ErrClaims},
		{"lifetime too long", long, gw.ID, now, ErrClaims},
		{"expired", tok, gw.ID, now.Add(2 * time.Minute), ErrClaims},
		{"from the future", tok, gw.ID, now.Add(-time.Minute), ErrClaims},
		{"tampered payload", tamperedPayload, gw.ID, now, ErrSignature},
		{"empty signature", noSig, gw.ID, now, ErrSignature},
		{"certificate swapped", swapped, other.ID, now, ErrSignature},
		{"garbage", "not.a.token", gw.ID, now, ErrMalformed},
		{"too long", strings.Repeat("a", MaxSize+1), gw.ID, now, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(tt.token, tt.peer, tt.at)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %+v, %v; want %v", c, err, tt.want)
			}
		})
	}

	revoked[gw.Serial()] = true
	if _, err := v.Verify(tok, gw.ID, now); !errors.Is(err, ErrSigner) {
		t.Fatalf("revoked signer (cached token): %v, want ErrSigner", err)
	}
}

func mustSign(t *testing.T, s *identity.SVID, c Claims, now time.Time) string {
	t.Helper()
	tok, err := Sign(s, c, now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func BenchmarkVerifyCached(b *testing.B) {
	ca := newTestCA(b)
	gw := ca.svid(b, "/gateway/edge")
	orders := spiffeid.RequireFromString("spiffe://example.org/svc/orders")
	tok, _ := Sign(gw, Claims{Audience: orders.String(), Subject: "alice"}, time.Now(), time.Minute)
	v := &Verifier{Audience: orders, Bundle: func() *identity.Bundle { return ca.bundle }}
	for b.Loop() {
		if _, err := v.Verify(tok, gw.ID, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRevokedSignerRefusedOnFirstSight: a token whose signing certificate
// is already revoked when the token is first seen is refused, not only one
// that was cached before the revocation.
func TestRevokedSignerRefusedOnFirstSight(t *testing.T) {
	ca := newTestCA(t)
	gw := ca.svid(t, "/gateway/edge")
	orders := spiffeid.RequireFromString("spiffe://example.org/svc/orders")
	now := time.Now()
	tok := mustSign(t, gw, Claims{Audience: orders.String(), Subject: "alice"}, now)
	v := &Verifier{Audience: orders, Bundle: func() *identity.Bundle { return ca.bundle },
		Revoked: func(s string) bool { return s == gw.Serial() }}
	if c, err := v.Verify(tok, gw.ID, now); !errors.Is(err, ErrSigner) {
		t.Fatalf("Verify = %+v, %v; want ErrSigner", c, err)
	}
}

// TestIssuerMustBeSigningCertificate: the iss claim must name the
// certificate that signed. A token signed by one gateway that names
// another as iss, sent by that other one, is refused: otherwise a gateway
// could speak in another's name.
func TestIssuerMustBeSigningCertificate(t *testing.T) {
	ca := newTestCA(t)
	gw := ca.svid(t, "/gateway/edge")
	other := ca.svid(t, "/gateway/other")
	orders := spiffeid.RequireFromString("spiffe://example.org/svc/orders")
	now := time.Now()
	payload, err := json.Marshal(Claims{Signer: gw.ID.String(), Audience: orders.String(), Subject: "alice",
		IssuedAt: now.Unix(), Expiry: now.Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	opts := (&jose.SignerOptions{}).WithType("ward-id+jwt").
		WithHeader("x5c", []string{base64.StdEncoding.EncodeToString(other.Leaf().Raw)})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: other.Key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Audience: orders, Bundle: func() *identity.Bundle { return ca.bundle }}
	if c, err := v.Verify(tok, gw.ID, now); !errors.Is(err, ErrClaims) {
		t.Fatalf("Verify = %+v, %v; want ErrClaims", c, err)
	}
}
