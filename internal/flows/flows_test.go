package flows

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestTemplate(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/", "/"},
		{"", "/"},
		{"/orders", "/orders"},
		{"/orders/123", "/orders/{id}"},
		{"/orders/123/items/7", "/orders/{id}/items/{id}"},
		{"/users/3f2b8c1e-9a7d-4c2e-8f1a-0b6d5e4c3a21/cart", "/users/{id}/cart"},
		{"/blobs/deadbeef00112233", "/blobs/{id}"},
		{"/blobs/deadbeefdeadbeef", "/blobs/deadbeefdeadbeef"}, // no digit: a word
		{"/v1/orders", "/v1/orders"},
		{"/t/" + strings.Repeat("x", 40), "/t/{id}"},
		{"/a/b/c/d/e/f/g/h/i/j", "/a/b/c/d/e/f/g/h/{rest}"},
		{"/orders/", "/orders/"},
		{"//x", "//x"},
		{"orders/1", "/orders/{id}"},
	} {
		if got := Template(tc.in); got != tc.want {
			t.Errorf("Template(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := "/" + strings.Repeat("abcdefgh/", 40)
	if got := Template(long); len(got) > maxTemplate+1+len(RestSegment) || !strings.HasSuffix(got, RestSegment) {
		t.Errorf("Template(long) = %q (%d bytes), want at most %d bytes ending in %s", got, len(got), maxTemplate+len(RestSegment), RestSegment)
	}
}

func TestTableCounts(t *testing.T) {
	tab := NewTable()
	for i := range 10 {
		tab.Observe(Sample{Source: "svc/catalog", Dest: "orders", Method: "GET", Path: fmt.Sprintf("/orders/%d", i),
			Decision: Allow, Reason: "allowed", Policy: "orders-callers", Status: 200, Latency: time.Duration(i) * time.Millisecond})
	}
	tab.Observe(Sample{Source: "svc/catalog", Dest: "orders", Method: "DELETE", Path: "/orders/1", Decision: Deny, Reason: "no_rule_matches", Status: 403})
	tab.Observe(Sample{Source: "svc/catalog", Dest: "orders", Method: "GET", Path: "/orders/1", Decision: Allow, Reason: "allowed", Policy: "orders-callers", Status: 503, Latency: 3 * time.Second})
	recs := tab.Flush(time.Now())
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3: %+v", len(recs), recs)
	}
	byKey := map[string]Record{}
	for _, r := range recs {
		byKey[fmt.Sprintf("%s %s %d", r.Method, r.Decision, r.Class)] = r
	}
	ok := byKey["GET allow 2"]
	if ok.Count != 10 || ok.Path != "/orders/{id}" || ok.Policy != "orders-callers" || ok.Source != "svc/catalog" || ok.Dest != "orders" {
		t.Errorf("GET 2xx edge = %+v", ok)
	}
	if ok.LatencyUS != 45000 {
		t.Errorf("latency sum = %d µs, want 45000", ok.LatencyUS)
	}
	// 0 and 1 ms in the first bucket, 2, 3-5, 6-9.
	if want := [NumBuckets]uint64{2, 1, 3, 4}; ok.Buckets != want {
		t.Errorf("buckets = %v, want %v", ok.Buckets, want)
	}
	if d := byKey["DELETE deny 4"]; d.Count != 1 || d.Reason != "no_rule_matches" {
		t.Errorf("deny edge = %+v", d)
	}
	if e := byKey["GET allow 5"]; e.Count != 1 || e.Buckets[NumBuckets-1] != 1 {
		t.Errorf("5xx edge = %+v", e)
	}
	if again := tab.Flush(time.Now()); len(again) != 0 {
		t.Errorf("a second flush returned %d records, want none", len(again))
	}
}

func TestTableCap(t *testing.T) {
	tab := NewTable()
	for i := range MaxEdges + 100 {
		tab.Observe(Sample{Source: "svc/a", Dest: "b", Method: "GET", Path: fmt.Sprintf("/w%x", i*7919+1<<20), Decision: Allow, Status: 200})
	}
	recs := tab.Flush(time.Now())
	if len(recs) != MaxEdges+1 {
		t.Fatalf("%d edges, want %d (the cap and one for the rest)", len(recs), MaxEdges+1)
	}
	var other uint64
	for _, r := range recs {
		if r.Path == OtherPath {
			other += r.Count
		}
	}
	if other != 100 || tab.Spilled() != 100 {
		t.Errorf("%s counted %d (spilled %d), want 100", OtherPath, other, tab.Spilled())
	}
}

func TestObserveAllocatesNothingOnKnownEdge(t *testing.T) {
	tab := NewTable()
	s := Sample{Source: "svc/catalog", Dest: "orders", Method: "GET", Path: "/orders/42/items", Decision: Allow, Reason: "allowed", Policy: "p", Status: 200, Latency: time.Millisecond}
	tab.Observe(s)
	if n := testing.AllocsPerRun(1000, func() { tab.Observe(s) }); n != 0 {
		t.Errorf("Observe allocates %v times per known edge, want 0", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	tab := NewTable()
	s := Sample{Source: "svc/catalog", Dest: "orders", Method: "GET", Path: "/orders/42/items", Decision: Allow, Reason: "allowed", Policy: "p", Status: 200, Latency: time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		tab.Observe(s)
	}
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"/", "/orders/1", "/a/b/c/d/e/f/g/h/i", "/users/3f2b8c1e-9a7d-4c2e-8f1a-0b6d5e4c3a21", "//%2F/x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		got := Template(path)
		if got == "" || got[0] != '/' {
			t.Fatalf("Template(%q) = %q: not a path", path, got)
		}
		if len(got) > maxTemplate+1+len(RestSegment) {
			t.Fatalf("Template(%q) is %d bytes", path, len(got))
		}
		for _, seg := range strings.Split(got, "/") {
			if isID(seg) {
				t.Fatalf("Template(%q) = %q keeps the identifier %q", path, got, seg)
			}
		}
	})
}
