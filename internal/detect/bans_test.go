package detect_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/detect"
	"github.com/wardsec/ward/internal/resource"
)

var t0 = time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC)

func ban(name string, spec resource.BanSpec) resource.Object {
	if spec.Expires == "" {
		spec.Expires = t0.Add(time.Hour).Format(time.RFC3339)
	}
	spec.Reason = "test"
	return resource.Object{APIVersion: resource.APIVersion, Kind: resource.KindBan, Metadata: resource.Metadata{Name: name}, Spec: &spec}
}

func testBans(t testing.TB) *detect.Bans {
	objs := []resource.Object{
		ban("addr", resource.BanSpec{Source: "203.0.113.7"}),
		ban("net", resource.BanSpec{Source: "198.51.100.0/24"}),
		ban("wide", resource.BanSpec{Source: "10.0.0.0/8", Expires: t0.Add(time.Minute).Format(time.RFC3339)}),
		ban("v6", resource.BanSpec{Source: "2001:db8::/32"}),
		ban("key", resource.BanSpec{APIKey: "abcdefgh"}),
		ban("user", resource.BanSpec{User: resource.BannedUser{Issuer: "corp", Subject: "mallory"}}),
		ban("wl", resource.BanSpec{SPIFFEID: "spiffe://example.org/svc/catalog"}),
	}
	if err := resource.Validate(objs); err != nil {
		t.Fatal(err)
	}
	return detect.Compile(objs)
}

func TestBansMatch(t *testing.T) {
	b := testBans(t)
	now := t0
	addr := func(s string) (string, bool) {
		h, ok := b.Addr(netip.MustParseAddr(s), now)
		return h.Name, ok
	}
	for _, tc := range []struct {
		addr, want string
	}{
		{"203.0.113.7", "addr"},
		{"::ffff:203.0.113.7", "addr"},
		{"203.0.113.8", ""},
		{"198.51.100.200", "net"},
		{"198.51.101.1", ""},
		{"10.200.3.4", "wide"},
		{"2001:db8:1::5", "v6"},
		{"2001:db9::5", ""},
	} {
		got, ok := addr(tc.addr)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("Addr(%s) = %q, %v; want %q", tc.addr, got, ok, tc.want)
		}
	}
	if h, ok := b.APIKey("abcdefgh", now); !ok || h.Name != "key" {
		t.Errorf("APIKey = %v %v", h, ok)
	}
	if _, ok := b.APIKey("abcdefgz", now); ok {
		t.Error("other key banned")
	}
	if h, ok := b.User("corp", "mallory", now); !ok || h.Name != "user" {
		t.Errorf("User = %v %v", h, ok)
	}
	if _, ok := b.User("other", "mallory", now); ok {
		t.Error("same subject of another issuer banned")
	}
	if h, ok := b.SPIFFEID("spiffe://example.org/svc/catalog", now); !ok || h.Name != "wl" {
		t.Errorf("SPIFFEID = %v %v", h, ok)
	}
	if got := b.Active(now); got != 7 {
		t.Errorf("Active = %d, want 7", got)
	}
}

func TestBansExpire(t *testing.T) {
	b := testBans(t)
	a := netip.MustParseAddr("10.1.2.3")
	if _, ok := b.Addr(a, t0.Add(time.Minute-time.Nanosecond)); !ok {
		t.Fatal("not banned just before expiry")
	}
	if h, ok := b.Addr(a, t0.Add(time.Minute)); ok {
		t.Fatalf("still banned at expiry: %v", h)
	}
	if got := b.Active(t0.Add(time.Minute)); got != 6 {
		t.Errorf("Active after one expiry = %d, want 6", got)
	}
	if _, ok := b.APIKey("abcdefgh", t0.Add(time.Hour)); ok {
		t.Error("key still banned after an hour")
	}
}

func TestBansNil(t *testing.T) {
	var b *detect.Bans
	if _, ok := b.Addr(netip.MustParseAddr("203.0.113.7"), t0); ok {
		t.Error("nil bans match")
	}
	if b.Len() != 0 || b.HasUsers() {
		t.Error("nil bans not empty")
	}
}

func TestBanValidate(t *testing.T) {
	for name, doc := range map[string]string{
		"two targets": "source: 203.0.113.7\n  apiKey: abcdefgh\n  expires: 2026-12-04T15:00:00Z\n  reason: x",
		"no target":   "expires: 2026-12-04T15:00:00Z\n  reason: x",
		"bad source":  "source: 203.0.113.999\n  expires: 2026-12-04T15:00:00Z\n  reason: x",
		"bad key":     "apiKey: ABC\n  expires: 2026-12-04T15:00:00Z\n  reason: x",
		"bad id":      "spiffeID: svc/catalog\n  expires: 2026-12-04T15:00:00Z\n  reason: x",
		"no expiry":   "source: 203.0.113.7\n  reason: x",
		"bad expiry":  "source: 203.0.113.7\n  expires: tomorrow\n  reason: x",
		"no reason":   "source: 203.0.113.7\n  expires: 2026-12-04T15:00:00Z",
		"unknown key": "source: 203.0.113.7\n  expires: 2026-12-04T15:00:00Z\n  reason: x\n  color: red",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := resource.Parse("bans.yaml", []byte("apiVersion: ward/v1\nkind: Ban\nmetadata: {name: b}\nspec:\n  "+doc+"\n"))
			if err == nil {
				t.Fatal("accepted")
			}
			t.Log(err)
		})
	}
}

func BenchmarkBansLookup(b *testing.B) {
	bans := testBans(b)
	a := netip.MustParseAddr("192.0.2.10") // not banned: the common case walks every probe
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := bans.Addr(a, now); ok {
			b.Fatal("banned")
		}
		if _, ok := bans.APIKey("zzzzzzzz", now); ok {
			b.Fatal("banned")
		}
	}
}

func TestBanRoundTrip(t *testing.T) {
	doc := "apiVersion: ward/v1\nkind: Ban\nmetadata: {name: b}\nspec:\n  source: 203.0.113.0/24\n  expires: 2026-12-04T15:00:00Z\n  reason: brute force\n  by: operator alice\n"
	objs, err := resource.Parse("bans.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	out := resource.Marshal(objs)
	again, err := resource.Parse("again.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := again[0].Spec.(*resource.BanSpec); got.Expires != "2026-12-04T15:00:00Z" || got.Source != "203.0.113.0/24" {
		t.Fatalf("round trip: %+v", got)
	}
	if b := detect.Compile(again); b.Active(t0.Add(-time.Second)) != 1 || b.Active(t0) != 0 {
		t.Fatal("expiry lost in the round trip")
	}
}
