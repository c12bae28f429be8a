package authn

import (
	"strings"
	"testing"
)

func TestPrincipalKey(t *testing.T) {
	full := Principal{
		SPIFFEID: "spiffe://example.org/svc/a", AppID: "billing", User: "alice",
		Issuer: "https://idp.example", Source: "2001:db8:1:2:3:4:5:6", AnonymousID: "anon_x",
	}
	anon := Principal{Source: "192.0.2.7", AnonymousID: "anon_y"}
	for _, tc := range []struct {
		p    Principal
		kind string
		want string
	}{
		{full, KeyKindAPIKey, "apikey:billing"},
		{full, KeyKindUser, "user:https://idp.example alice"},
		{full, KeyKindSPIFFE, "spiffe:spiffe://example.org/svc/a"},
		{full, KeyKindAnonymous, "anonymous:anon_x"},
		{full, KeyKindSource, "source:2001:db8:1:2::/64"},
		{anon, KeyKindUser, "anonymous:anon_y"},
		{anon, KeyKindAPIKey, "anonymous:anon_y"},
		{anon, "bogus", "anonymous:anon_y"},
		{anon, KeyKindSource, "source:192.0.2.7"},
		{Principal{Source: "::ffff:192.0.2.7"}, KeyKindUser, "source:192.0.2.7"},
		{Principal{}, KeyKindUser, "anonymous:unknown"},
	} {
		if got := tc.p.Key(tc.kind); got != tc.want {
			t.Errorf("Key(%q) of %+v = %q, want %q", tc.kind, tc.p, got, tc.want)
		}
	}
}

func TestAnonymousID(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	const ua = "Mozilla/5.0"
	a := AnonymousID(secret, "192.0.2.7", ua)
	if !strings.HasPrefix(a, "anon_") || len(a) != len("anon_")+22 {
		t.Fatalf("shape %q", a)
	}
	if a != AnonymousID(secret, "192.0.2.7", ua) {
		t.Fatal("not stable")
	}
	if strings.Contains(a, "192") {
		t.Fatal("leaks the address")
	}
	for name, other := range map[string]string{
		"other secret": AnonymousID([]byte("another secret of enough length!"), "192.0.2.7", ua),
		"other ip":     AnonymousID(secret, "192.0.2.8", ua),
		"other ua":     AnonymousID(secret, "192.0.2.7", ua+"x"),
		"shifted sep":  AnonymousID(secret, "192.0.2.7M", "ozilla/5.0"),
	} {
		if other == a {
			t.Errorf("%s: same id", name)
		}
	}
	// IPv6: one /64 is one client; the mapped IPv4 form is the IPv4 client.
	if AnonymousID(secret, "2001:db8::1", ua) != AnonymousID(secret, "2001:db8::ffff:1", ua) {
		t.Error("same /64, different ids")
	}
	if AnonymousID(secret, "2001:db8::1", ua) == AnonymousID(secret, "2001:db8:0:1::1", ua) {
		t.Error("different /64, same id")
	}
	if AnonymousID(secret, "::ffff:192.0.2.7", ua) != a {
		t.Error("IPv4-mapped differs from IPv4")
	}
}

// TestAnonymousLimitHoldsWhateverTheUserAgent (issue 12 finding 6): two
// anonymous callers from one source network with different User-Agents
// get different anonymous ids (for records) but one rate-limit key, on
// every key kind they cannot satisfy, while their log key stays the
// anonymous id.
func TestAnonymousLimitHoldsWhateverTheUserAgent(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	for _, src := range [][2]string{{"192.0.2.7", "192.0.2.7"}, {"2001:db8:1:2::1", "2001:db8:1:2::99"}} {
		a := Principal{Source: src[0], AnonymousID: AnonymousID(secret, src[0], "curl/8.0")}
		b := Principal{Source: src[1], AnonymousID: AnonymousID(secret, src[1], "Mozilla/5.0")}
		if a.AnonymousID == b.AnonymousID {
			t.Fatalf("anonymous ids for records should differ by User-Agent: %s", a.AnonymousID)
		}
		for _, kind := range []string{KeyKindAnonymous, KeyKindUser, KeyKindAPIKey, KeyKindSPIFFE, KeyKindSource} {
			if ka, kb := a.LimitKey(kind), b.LimitKey(kind); ka != kb {
				t.Errorf("LimitKey(%q): %q and %q differ by User-Agent alone", kind, ka, kb)
			}
		}
		if a.Key(KeyKindUser) != "anonymous:"+a.AnonymousID {
			t.Errorf("log key %q, want the anonymous id", a.Key(KeyKindUser))
		}
	}
}
