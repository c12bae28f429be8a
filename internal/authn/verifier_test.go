package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func TestVerifyValid(t *testing.T) {
	rk, ek := testKeys(t)
	p := newIDP(t, pubJWK(rk, "rsa1", "RS256"), pubJWK(ek, "ec1", "ES256"))
	v := newTestVerifier(t, p, nil)
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		tok  string
	}{
		{"RS256", sign(t, rk, "RS256", "rsa1", nil, claimsFor(p))},
		{"ES256", sign(t, ek, "ES256", "ec1", nil, claimsFor(p))},
		{"no kid", sign(t, ek, "ES256", "", nil, claimsFor(p))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, err := v.Verify(ctx, tc.tok)
			if err != nil {
				t.Fatal(err)
			}
			if pr.User != "alice" || pr.Issuer != p.URL {
				t.Fatalf("principal %+v", pr)
			}
			if !slices.Equal(pr.Scopes, []string{"orders:read", "orders:write"}) || !pr.HasScope("orders:read") {
				t.Fatalf("scopes %v", pr.Scopes)
			}
			if pr.Claims["sub"] != "alice" {
				t.Fatalf("claims %v", pr.Claims)
			}
		})
	}

	// Route-restricted issuers.
	tok := sign(t, rk, "RS256", "rsa1", nil, claimsFor(p))
	if _, err := v.Verify(ctx, tok, "corp"); err != nil {
		t.Fatalf("allowed issuer: %v", err)
	}
	_, err := v.Verify(ctx, tok, "partner")
	assertReason(t, err, ReasonJWTWrongIssuer, tok)

	// "scp" as an array.
	c := claimsFor(p)
	delete(c, "scope")
	c["scp"] = []string{"a", "b"}
	pr, err := v.Verify(ctx, sign(t, rk, "RS256", "rsa1", nil, c))
	if err != nil || !slices.Equal(pr.Scopes, []string{"a", "b"}) {
		t.Fatalf("scp: %v %v", pr.Scopes, err)
	}
	if got := p.Count("/jwks"); got != 1 {
		t.Fatalf("jwks fetched %d times, want 1 (cached)", got)
	}
}

func TestVerifyAttacks(t *testing.T) {
	rk, ek := testKeys(t)
	p := newIDP(t, pubJWK(rk, "rsa1", "RS256"), pubJWK(ek, "ec1", "ES256"))

	// The attacker's server: jku/x5u point here, and it must never be asked.
	var attackerHits atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
	}))
	defer attacker.Close()
	evil, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	v := newTestVerifier(t, p, nil)
	ctx := context.Background()
	ok := claimsFor(p)
	with := func(k string, val any) map[string]any {
		c := claimsFor(p)
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	valid := sign(t, rk, "RS256", "rsa1", nil, ok)
	parts := strings.Split(valid, ".")
	jku := map[jose.HeaderKey]any{"jku": attacker.URL + "/jwks", "x5u": attacker.URL + "/cert.pem"}

	tests := []struct {
		name   string
		tok    string
		reason string
	}{
		{"alg none", craft(t, map[string]any{"alg": "none", "typ": "JWT"}, ok, nil), ReasonJWTAlgNotAllowed},
		{"alg None", craft(t, map[string]any{"alg": "None"}, ok, nil), ReasonJWTAlgNotAllowed},
		{"alg NONE with signature", craft(t, map[string]any{"alg": "NONE", "kid": "rsa1"}, ok, []byte("sig")), ReasonJWTAlgNotAllowed},
		{"alg none original signature", b64json(t, map[string]any{"alg": "none"}) + "." + parts[1] + "." + parts[2], ReasonJWTAlgNotAllowed},
		{"no alg", craft(t, map[string]any{"kid": "rsa1"}, ok, []byte("sig")), ReasonJWTAlgNotAllowed},
		{"empty signature", parts[0] + "." + parts[1] + ".", ReasonJWTBadSignature},
		{"HS256 with public key PEM", hmacToken(t, "rsa1", publicPEM(t, &rk.PublicKey), ok), ReasonJWTAlgNotAllowed},
		{"HS256 with public key DER", hmacToken(t, "rsa1", pubDER, ok), ReasonJWTAlgNotAllowed},
		{"HS256 with EC public key PEM", hmacToken(t, "ec1", publicPEM(t, &ek.PublicKey), ok), ReasonJWTAlgNotAllowed},
		{"ES256 r=s=0", craft(t, map[string]any{"alg": "ES256", "kid": "ec1"}, ok, make([]byte, 64)), ReasonJWTBadSignature},
		{"ES256 r=s=0 no kid", craft(t, map[string]any{"alg": "ES256"}, ok, make([]byte, 64)), ReasonJWTBadSignature},
		{"ES256 r=s=n", craft(t, map[string]any{"alg": "ES256", "kid": "ec1"}, ok, append(elliptic.P256().Params().N.FillBytes(make([]byte, 32)), elliptic.P256().Params().N.FillBytes(make([]byte, 32))...)), ReasonJWTBadSignature},
		{"kid path traversal", sign(t, rk, "RS256", "../../etc/passwd", nil, ok), ReasonJWTUnknownKey},
		{"kid URL", sign(t, rk, "RS256", attacker.URL+"/key", nil, ok), ReasonJWTUnknownKey},
		{"jku and x5u to attacker with attacker kid", sign(t, evil, "RS256", "evil", jku, ok), ReasonJWTUnknownKey},
		{"jku and x5u to attacker with our kid", sign(t, evil, "RS256", "rsa1", jku, ok), ReasonJWTBadSignature},
		{"embedded jwk", func() string {
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: evil}, &jose.SignerOptions{EmbedJWK: true})
			if err != nil {
				t.Fatal(err)
			}
			jws, err := s.Sign([]byte(b64json(t, ok)))
			if err != nil {
				t.Fatal(err)
			}
			tok, _ := jws.CompactSerialize()
			return tok
		}(), ReasonJWTMalformed}, // payload above is base64 text, not JSON: never reaches keys
		{"embedded jwk, JSON payload", sign(t, evil, "RS256", "", map[jose.HeaderKey]any{"jwk": pubJWK(evil, "", "")}, ok), ReasonJWTBadSignature},
		{"signed by another key", sign(t, evil, "RS256", "rsa1", nil, ok), ReasonJWTBadSignature},
		{"payload swapped", parts[0] + "." + b64json(t, with("sub", "admin")) + "." + parts[2], ReasonJWTBadSignature},
		{"RSA kid with ES256 alg", craft(t, map[string]any{"alg": "ES256", "kid": "rsa1"}, ok, make([]byte, 64)), ReasonJWTUnknownKey},
		{"EC kid with RS256 alg", sign(t, rk, "RS256", "ec1", nil, ok), ReasonJWTUnknownKey},
		{"PS256 not allow-listed", sign(t, rk, "PS256", "rsa1", nil, ok), ReasonJWTAlgNotAllowed},
		{"expired", sign(t, rk, "RS256", "rsa1", nil, with("exp", testNow.Add(-time.Minute).Unix())), ReasonJWTExpired},
		{"nbf in the future", sign(t, rk, "RS256", "rsa1", nil, with("nbf", testNow.Add(time.Minute).Unix())), ReasonJWTNotYetValid},
		{"iat in the future", sign(t, rk, "RS256", "rsa1", nil, with("iat", testNow.Add(time.Hour).Unix())), ReasonJWTNotYetValid},
		{"no exp", sign(t, rk, "RS256", "rsa1", nil, with("exp", nil)), ReasonJWTMissingClaim},
		{"no sub", sign(t, rk, "RS256", "rsa1", nil, with("sub", nil)), ReasonJWTMissingClaim},
		{"wrong issuer", sign(t, rk, "RS256", "rsa1", nil, with("iss", "https://evil.example")), ReasonJWTWrongIssuer},
		{"issuer with trailing slash", sign(t, rk, "RS256", "rsa1", nil, with("iss", p.URL+"/")), ReasonJWTWrongIssuer},
		{"no issuer", sign(t, rk, "RS256", "rsa1", nil, with("iss", nil)), ReasonJWTWrongIssuer},
		{"wrong audience", sign(t, rk, "RS256", "rsa1", nil, with("aud", "someone-else")), ReasonJWTWrongAudience},
		{"no audience", sign(t, rk, "RS256", "rsa1", nil, with("aud", nil)), ReasonJWTWrongAudience},
		{"aud not a string", sign(t, rk, "RS256", "rsa1", nil, with("aud", 7)), ReasonJWTMalformed},
		{"oversized", sign(t, rk, "RS256", "rsa1", nil, with("pad", strings.Repeat("A", MaxTokenSize))), ReasonJWTTooLarge},
		{"empty", "", ReasonJWTMalformed},
		{"two parts", parts[0] + "." + parts[1], ReasonJWTMalformed},
		{"JWE shape", valid + ".x.y", ReasonJWTMalformed},
		{"header not base64", "!!!." + parts[1] + "." + parts[2], ReasonJWTMalformed},
		{"header not JSON", b64([]byte("alg")) + "." + parts[1] + "." + parts[2], ReasonJWTMalformed},
		{"claims not JSON", parts[0] + "." + b64([]byte("not json")) + "." + parts[2], ReasonJWTMalformed},
		{"claims JSON array", parts[0] + "." + b64([]byte("[1]")) + "." + parts[2], ReasonJWTMalformed},
		{"claims null", parts[0] + "." + b64([]byte("null")) + "." + parts[2], ReasonJWTMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(ctx, tc.tok)
			assertReason(t, err, tc.reason, tc.tok)
		})
	}
	if n := attackerHits.Load(); n != 0 {
		t.Fatalf("attacker server contacted %d times", n)
	}
	// Many unknown kids cost the issuer at most one extra fetch per interval.
	if n := p.Count("/jwks"); n > 2 {
		t.Fatalf("jwks fetched %d times", n)
	}
	// And the valid token still verifies afterwards.
	if _, err := v.Verify(ctx, valid); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyLeeway(t *testing.T) {
	rk, _ := testKeys(t)
	p := newIDP(t, pubJWK(rk, "rsa1", ""))
	v := newTestVerifier(t, p, nil)
	c := claimsFor(p)
	c["exp"] = testNow.Add(-20 * time.Second).Unix() // inside the default 30s
	c["nbf"] = testNow.Add(20 * time.Second).Unix()
	if _, err := v.Verify(context.Background(), sign(t, rk, "RS256", "rsa1", nil, c)); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	c["exp"] = testNow.Add(-40 * time.Second).Unix()
	_, err := v.Verify(context.Background(), sign(t, rk, "RS256", "rsa1", nil, c))
	if !errors.Is(err, ErrJWTExpired) {
		t.Fatalf("beyond leeway: %v", err)
	}
}

func TestVerifyIssuerAllowList(t *testing.T) {
	rk, ek := testKeys(t)
	p := newIDP(t, pubJWK(rk, "rsa1", ""), pubJWK(ek, "ec1", ""))
	v := newTestVerifier(t, p, func(i *Issuer) { i.Algorithms = []string{"ES256"} })
	tok := sign(t, rk, "RS256", "rsa1", nil, claimsFor(p))
	_, err := v.Verify(context.Background(), tok)
	assertReason(t, err, ReasonJWTAlgNotAllowed, tok)
	if _, err := v.Verify(context.Background(), sign(t, ek, "ES256", "ec1", nil, claimsFor(p))); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyKeyRotation(t *testing.T) {
	rk, ek := testKeys(t)
	p := newIDP(t, pubJWK(rk, "old", "RS256"))
	v := newTestVerifier(t, p, nil, WithRefresh(time.Hour, 0))
	ctx := context.Background()
	oldTok := sign(t, rk, "RS256", "old", nil, claimsFor(p))
	newTok := sign(t, ek, "ES256", "new", nil, claimsFor(p))

	if _, err := v.Verify(ctx, oldTok); err != nil {
		t.Fatal(err)
	}
	// Overlap: both keys published; the new kid is fetched on first sight.
	p.SetKeys(pubJWK(rk, "old", "RS256"), pubJWK(ek, "new", "ES256"))
	if _, err := v.Verify(ctx, newTok); err != nil {
		t.Fatalf("new kid after rotation: %v", err)
	}
	if _, err := v.Verify(ctx, oldTok); err != nil {
		t.Fatalf("old kid during overlap: %v", err)
	}
	// The old key is withdrawn: once the set is refreshed it is gone.
	p.SetKeys(pubJWK(ek, "new", "ES256"))
	if _, err := v.Verify(ctx, sign(t, ek, "ES256", "unknown", nil, claimsFor(p))); ReasonOf(err) != ReasonJWTUnknownKey {
		t.Fatalf("unknown kid: %v", err) // forces a refresh
	}
	_, err := v.Verify(ctx, oldTok)
	assertReason(t, err, ReasonJWTUnknownKey, oldTok)
}

func TestVerifyRefreshRateLimited(t *testing.T) {
	rk, ek := testKeys(t)
	p := newIDP(t, pubJWK(rk, "rsa1", ""))
	v := newTestVerifier(t, p, nil, WithRefresh(time.Hour, time.Hour))
	ctx := context.Background()
	for i := range 20 {
		_, err := v.Verify(ctx, sign(t, rk, "RS256", "nope"+string(rune('a'+i)), nil, claimsFor(p)))
		assertReason(t, err, ReasonJWTUnknownKey, "")
	}
	if n := p.Count("/jwks"); n != 1 {
		t.Fatalf("jwks fetched %d times, want 1", n)
	}
	// A new key is not seen until the interval passes...
	p.SetKeys(pubJWK(rk, "rsa1", ""), pubJWK(ek, "ec1", ""))
	tok := sign(t, ek, "ES256", "ec1", nil, claimsFor(p))
	_, err := v.Verify(ctx, tok)
	assertReason(t, err, ReasonJWTUnknownKey, tok)
	if n := p.Count("/.well-known/openid-configuration"); n != 1 {
		t.Fatalf("discovery fetched %d times, want 1", n)
	}
}

func TestVerifierRunRefreshes(t *testing.T) {
	rk, ek := testKeys(t)
	p := newIDP(t, pubJWK(rk, "rsa1", ""))
	v := newTestVerifier(t, p, nil, WithRefresh(10*time.Millisecond, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	p.SetKeys(pubJWK(ek, "ec1", ""))
	tok := sign(t, ek, "ES256", "ec1", nil, claimsFor(p))
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(context.Background(), tok)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("periodic refresh never picked up the new key: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestVerifyKeysUnavailable(t *testing.T) {
	rk, _ := testKeys(t)
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"server error", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 500) }},
		{"discovery names another issuer", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"issuer":"https://other.example","jwks_uri":"https://other.example/jwks"}`))
		}},
		{"jwks only symmetric keys", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[{"kty":"oct","kid":"rsa1","k":"c2VjcmV0"}]}`))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			v, err := NewVerifier([]Issuer{{Name: "x", IssuerURL: srv.URL, JWKSURL: srv.URL + "/jwks", Audiences: []string{"a"}}},
				WithInsecureLoopbackHTTP(), WithHTTPClient(testClient(t)))
			if tc.name == "discovery names another issuer" {
				v, err = NewVerifier([]Issuer{{Name: "x", IssuerURL: srv.URL, Audiences: []string{"a"}}},
					WithInsecureLoopbackHTTP(), WithHTTPClient(testClient(t)))
			}
			if err != nil {
				t.Fatal(err)
			}
			c := map[string]any{"iss": srv.URL, "sub": "a", "aud": "a", "exp": time.Now().Add(time.Hour).Unix()}
			tok := sign(t, rk, "RS256", "rsa1", nil, c)
			_, err = v.Verify(context.Background(), tok)
			assertReason(t, err, ReasonJWTKeysUnavailable, tok)
		})
	}
}

func TestVerifyHTTPS(t *testing.T) {
	_, ek := testKeys(t)
	var srvURL string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_, _ = w.Write([]byte(`{"issuer":"` + srvURL + `","jwks_uri":"` + srvURL + `/keys"}`))
		case "/keys":
			b, _ := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pubJWK(ek, "ec1", "ES256")}}.Keys[0].MarshalJSON()
			_, _ = w.Write([]byte(`{"keys":[` + string(b) + `]}`))
		}
	}))
	defer srv.Close()
	srvURL = srv.URL
	client := srv.Client()
	defer client.CloseIdleConnections()
	// No loopback exception needed: this is https.
	v, err := NewVerifier([]Issuer{{Name: "tls", IssuerURL: srv.URL, Audiences: []string{"a"}}}, WithHTTPClient(client))
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]any{"iss": srv.URL, "sub": "bob", "aud": "a", "exp": time.Now().Add(time.Hour).Unix(), "scp": "x y"}
	pr, err := v.Verify(context.Background(), sign(t, ek, "ES256", "ec1", nil, c))
	if err != nil {
		t.Fatal(err)
	}
	if pr.User != "bob" || !slices.Equal(pr.Scopes, []string{"x", "y"}) {
		t.Fatalf("principal %+v", pr)
	}
}

func TestNewVerifierRejectsBadConfig(t *testing.T) {
	base := Issuer{Name: "corp", IssuerURL: "https://idp.example", Audiences: []string{"a"}}
	tests := []struct {
		name string
		mod  func(*Issuer)
		opts []Option
	}{
		{"alg none", func(i *Issuer) { i.Algorithms = []string{"none"} }, nil},
		{"alg None", func(i *Issuer) { i.Algorithms = []string{"RS256", "None"} }, nil},
		{"HS256", func(i *Issuer) { i.Algorithms = []string{"HS256"} }, nil},
		{"hs512", func(i *Issuer) { i.Algorithms = []string{"hs512"} }, nil},
		{"unknown alg", func(i *Issuer) { i.Algorithms = []string{"RS1"} }, nil},
		{"no audience", func(i *Issuer) { i.Audiences = nil }, nil},
		{"empty audience", func(i *Issuer) { i.Audiences = []string{""} }, nil},
		{"no name", func(i *Issuer) { i.Name = "" }, nil},
		{"http issuer", func(i *Issuer) { i.IssuerURL = "http://idp.example" }, nil},
		{"http loopback without option", func(i *Issuer) { i.IssuerURL = "http://127.0.0.1:1" }, nil},
		{"http non-loopback with option", func(i *Issuer) { i.IssuerURL = "http://10.0.0.1" }, []Option{WithInsecureLoopbackHTTP()}},
		{"http jwks", func(i *Issuer) { i.JWKSURL = "http://idp.example/jwks" }, nil},
		{"file jwks", func(i *Issuer) { i.JWKSURL = "file:///etc/passwd" }, nil},
		{"user info", func(i *Issuer) { i.IssuerURL = "https://u:p@idp.example" }, nil},
		{"relative", func(i *Issuer) { i.IssuerURL = "/idp" }, nil},
		{"leeway too big", func(i *Issuer) { i.Leeway = time.Hour }, nil},
		{"negative leeway", func(i *Issuer) { i.Leeway = -time.Second }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss := base
			tc.mod(&iss)
			if _, err := NewVerifier([]Issuer{iss}, tc.opts...); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := NewVerifier([]Issuer{base, base}); err == nil {
		t.Fatal("duplicate issuer accepted")
	}
	if _, err := NewVerifier(nil); err == nil {
		t.Fatal("no issuers accepted")
	}
	v, err := NewVerifier([]Issuer{base})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.issuers[0].cfg; got.Leeway != DefaultLeeway || !slices.Equal(got.Algorithms, DefaultAlgorithms) {
		t.Fatalf("defaults not applied: %+v", got)
	}
}

func TestKeyFitsAlg(t *testing.T) {
	rk, ek := testKeys(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  any
		alg  string
		want bool
	}{
		{&rk.PublicKey, "RS256", true}, {&rk.PublicKey, "PS512", true},
		{&rk.PublicKey, "HS256", false}, {&rk.PublicKey, "ES256", false},
		{&ek.PublicKey, "ES256", true}, {&ek.PublicKey, "ES384", false}, {&ek.PublicKey, "HS256", false},
		{&p384.PublicKey, "ES384", true}, {&p384.PublicKey, "ES256", false},
		{[]byte("secret"), "HS256", false},
	} {
		if got := keyFitsAlg(tc.key, tc.alg); got != tc.want {
			t.Errorf("keyFitsAlg(%T, %s) = %v", tc.key, tc.alg, got)
		}
	}
}
