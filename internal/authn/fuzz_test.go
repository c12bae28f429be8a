package authn

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"encoding/base64"
)

// Fuzz tokens are checked at fuzzNow, long after every seed token signed by
// the test keys expired: mutations of a genuinely signed token reach
// signature and claim checks, yet nothing may ever be accepted.
var fuzzNow = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

const fuzzIssuer = "https://issuer.fuzz.example"

// fuzzSeeds are tokens for FuzzVerifyJWT. They are also committed under
// testdata/fuzz/FuzzVerifyJWT (regenerate with WARD_WRITE_FUZZ_CORPUS=1).
func fuzzSeeds(t testing.TB) []string {
	rk, ek := testKeys(t)
	c := map[string]any{"iss": fuzzIssuer, "sub": "alice", "aud": "ward-edge", "exp": int64(4102444800 - 3600), "scope": "a b"}
	valid := sign(t, rk, "RS256", "rsa1", nil, c)
	parts := strings.Split(valid, ".")
	return []string{
		valid,
		sign(t, ek, "ES256", "ec1", nil, c),
		sign(t, ek, "ES256", "", nil, c),
		craft(t, map[string]any{"alg": "none"}, c, nil),
		craft(t, map[string]any{"alg": "None", "kid": "rsa1"}, c, nil),
		parts[0] + "." + parts[1] + ".",
		hmacToken(t, "rsa1", publicPEM(t, &rk.PublicKey), c),
		craft(t, map[string]any{"alg": "ES256", "kid": "ec1"}, c, make([]byte, 64)),
		sign(t, rk, "RS256", "../../etc/passwd", nil, c),
		craft(t, map[string]any{"alg": "RS256", "kid": "rsa1", "jku": "http://127.0.0.1:1/jwks", "x5u": "http://127.0.0.1:1/x"}, c, []byte("x")),
		"", ".", "..", "a.b.c", "eyJ9.eyJ9.eyJ9",
	}
}

// newFuzzVerifier serves the fixed test keys; the issuer URL is https but
// the JWKS is fetched once from loopback, then never again (long interval).
func newFuzzVerifier(f *testing.F) *Verifier {
	rk, ek := testKeys(f)
	p := newIDP(f, pubJWK(rk, "rsa1", "RS256"), pubJWK(ek, "ec1", "ES256"))
	v, err := NewVerifier([]Issuer{{Name: "fuzz", IssuerURL: fuzzIssuer, JWKSURL: p.URL + "/jwks", Audiences: []string{"ward-edge"}}},
		WithInsecureLoopbackHTTP(), WithHTTPClient(testClient(f)), WithClock(func() time.Time { return fuzzNow }),
		WithRefresh(time.Hour, time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	return v
}

func FuzzVerifyJWT(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	v := newFuzzVerifier(f)
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := v.Verify(context.Background(), tok)
		if err == nil {
			t.Fatalf("accepted a token: %+v", p)
		}
		if ReasonOf(err) == "" {
			t.Fatalf("no reason code: %v", err)
		}
		if len(tok) >= 24 && strings.Contains(err.Error(), tok) {
			t.Fatalf("error echoes the token: %v", err)
		}
	})
}

func FuzzParseAPIKey(f *testing.F) {
	for _, s := range []string{
		"wak_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"wak_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
		"wak_ABCDEFGH_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"wak_abcdefgh__________________________________________w",
		"wak_abcdefgh_", "wak_", "", "Bearer wak_x",
	} {
		f.Add(s)
	}
	store := NewMemoryAPIKeyStore()
	known, rec, err := NewAPIKey("app", []string{"*"}, time.Time{})
	if err != nil {
		f.Fatal(err)
	}
	if err := store.Add(rec); err != nil {
		f.Fatal(err)
	}
	f.Add(known)
	keys := NewAPIKeys(store)
	f.Fuzz(func(t *testing.T, s string) {
		prefix, err := ParseAPIKey(s)
		if err != nil {
			if ReasonOf(err) != ReasonAPIKeyMalformed {
				t.Fatalf("reason %q", ReasonOf(err))
			}
			if len(s) >= 8 && strings.Contains(err.Error(), s) {
				t.Fatalf("error echoes the input: %v", err)
			}
		} else {
			// Accepted means canonical: exactly one string per (prefix, secret).
			secret, derr := base64.RawURLEncoding.DecodeString(s[13:])
			if len(s) != 56 || s[:4] != "wak_" || s[4:12] != prefix || s[12] != '_' || derr != nil ||
				base64.RawURLEncoding.EncodeToString(secret) != s[13:] {
				t.Fatalf("accepted non-canonical key %q", s)
			}
		}
		p, err := keys.Authenticate(context.Background(), s, "r", time.Now())
		if (err == nil) != (s == known) {
			t.Fatalf("Authenticate(%q) = %+v, %v", s, p, err)
		}
	})
}

// TestFuzzCorpus checks that the committed seed corpora hold every seed
// (the signed JWT seeds cannot be compared byte for byte: ES256 signatures
// are randomized). With WARD_WRITE_FUZZ_CORPUS=1 it writes them anew.
func TestFuzzCorpus(t *testing.T) {
	corpora := map[string][]string{
		"FuzzVerifyJWT": fuzzSeeds(t),
		"FuzzParseAPIKey": {
			"wak_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			"wak_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
			"wak_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
			"wak_abcdefg1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			"wak_abcdefgh-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			"wak_abcdefgh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\u00e9",
		},
	}
	regenerate := os.Getenv("WARD_WRITE_FUZZ_CORPUS") == "1"
	for name, seeds := range corpora {
		dir := filepath.Join("testdata", "fuzz", name)
		if regenerate {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for i, seed := range seeds {
			path := filepath.Join(dir, fmt.Sprintf("seed-%02d", i))
			body := fmt.Sprintf("go test fuzz v1\nstring(%q)\n", seed)
			if regenerate {
				if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%s: %v (regenerate with WARD_WRITE_FUZZ_CORPUS=1)", path, err)
				continue
			}
			if name == "FuzzParseAPIKey" && string(got) != body {
				t.Errorf("%s is stale (regenerate with WARD_WRITE_FUZZ_CORPUS=1)", path)
			}
		}
	}
}

// TestFuzzSeedsReachDeepChecks makes sure the signed seeds get past the
// signature check (and fail only on time), so fuzzing starts deep.
func TestFuzzSeedsReachDeepChecks(t *testing.T) {
	rk, ek := testKeys(t)
	p := newIDP(t, pubJWK(rk, "rsa1", "RS256"), pubJWK(ek, "ec1", "ES256"))
	v, err := NewVerifier([]Issuer{{Name: "fuzz", IssuerURL: fuzzIssuer, JWKSURL: p.URL + "/jwks", Audiences: []string{"ward-edge"}}},
		WithInsecureLoopbackHTTP(), WithHTTPClient(testClient(t)), WithClock(func() time.Time { return fuzzNow }))
	if err != nil {
		t.Fatal(err)
	}
	seeds := fuzzSeeds(t)
	for i, want := range []string{ReasonJWTExpired, ReasonJWTExpired, ReasonJWTExpired, ReasonJWTAlgNotAllowed, ReasonJWTAlgNotAllowed,
		ReasonJWTBadSignature, ReasonJWTAlgNotAllowed, ReasonJWTBadSignature, ReasonJWTUnknownKey, ReasonJWTBadSignature} {
		_, err := v.Verify(context.Background(), seeds[i])
		assertReason(t, err, want, seeds[i])
	}
}
