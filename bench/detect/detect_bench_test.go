package detectbench

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/wardsec/ward/internal/audit"
	"github.com/wardsec/ward/internal/detect"
	"github.com/wardsec/ward/internal/resource"
)

// bans returns n bans: addresses, CIDRs of several lengths and API keys.
func bans(n int) []resource.Object {
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	const alpha = "abcdefghijklmnopqrstuvwxyz234567"
	out := make([]resource.Object, 0, n)
	for i := range n {
		s := &resource.BanSpec{Expires: exp, Reason: "bench"}
		switch i % 3 {
		case 0:
			s.Source = fmt.Sprintf("198.%d.%d.%d", 18+i>>16&1, i>>8&0xff, i&0xff)
		case 1:
			s.Source = fmt.Sprintf("10.%d.%d.0/%d", i>>8&0xff, i&0xff, 16+i%9)
		default:
			p := []byte("qqqqqqqq")
			for j, k := 7, i; k > 0; j, k = j-1, k/32 {
				p[j] = alpha[k%32]
			}
			s.APIKey = string(p)
		}
		out = append(out, resource.Object{APIVersion: resource.APIVersion, Kind: resource.KindBan, Metadata: resource.Metadata{Name: fmt.Sprintf("b%d", i)}, Spec: s})
	}
	return out
}

// BenchmarkBanLookup is the per-request check of a proxy with 10,000 bans
// in force for a caller that is not banned (every probe is made): its
// address, then its API key prefix.
func BenchmarkBanLookup(b *testing.B) {
	table := detect.Compile(bans(10_000))
	a := netip.MustParseAddr("192.0.2.10")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := table.Addr(a, now); ok {
			b.Fatal("banned")
		}
		if _, ok := table.APIKey("zzzzzzzz", now); ok {
			b.Fatal("banned")
		}
	}
}

// BenchmarkBanLookupHit is the same for a banned address.
func BenchmarkBanLookupHit(b *testing.B) {
	table := detect.Compile(bans(10_000))
	a := netip.MustParseAddr("10.0.5.77") // inside ban b5's CIDR
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := table.Addr(a, now); !ok {
			b.Fatal("not banned")
		}
	}
}

// BenchmarkObserve is the server's cost per ingested record with the
// default rules, for records from 10,000 callers in turn (allowed
// requests, 1 in 10 a refused key).
func BenchmarkObserve(b *testing.B) {
	d := detect.New(0)
	d.Configure(detect.Defaults())
	evs := make([]audit.Event, 10_000)
	for i := range evs {
		e := &evs[i]
		*e = audit.Event{Type: "gateway.response", Decision: "allow", Source: fmt.Sprintf("172.16.%d.%d:443", i>>8, i&0xff),
			RequestID: fmt.Sprintf("r%d", i), HTTP: audit.HTTP{Status: 200, Method: "GET", Host: "api", Path: "/orders/1", KeyPrefix: "abcdefgh"}}
		if i%10 == 0 {
			e.Type, e.Decision, e.Reason, e.HTTP.Status = "gateway.request", "deny", "apikey_unknown", 401
		}
	}
	start := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e := &evs[i%len(evs)]
		e.Time = start.Add(time.Duration(i) * time.Millisecond)
		d.Observe(e)
		i++
	}
}
