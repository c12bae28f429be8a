package resource

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// routeObj is a Route object as a parsed set holds one.
func routeObj(name, host, prefix, service string) Object {
	return Object{Kind: KindRoute, Metadata: Metadata{Name: name}, Spec: &RouteSpec{Host: host, PathPrefix: prefix, Service: service}}
}

// matchByRule is the matching rule written out plainly: the routes of the
// host, else those for any host; the longest prefix under which the path
// lies.
func matchByRule(routes []Object, host, path string) *Object {
	var best *Object
	for _, h := range []string{host, ""} {
		for i := range routes {
			s := routes[i].Spec.(*RouteSpec)
			if s.Host != h {
				continue
			}
			if PrefixCovers(s.PathPrefix, path) && (best == nil || len(s.PathPrefix) > len(best.Spec.(*RouteSpec).PathPrefix)) {
				best = &routes[i]
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

func TestRouteTableMatch(t *testing.T) {
	routes := []Object{
		routeObj("all", "", "/", "a"),
		routeObj("orders", "", "/orders", "orders"),
		routeObj("orders-1", "", "/orders/1", "evil"),
		routeObj("api-orders", "api.example.com", "/orders", "orders"),
		routeObj("api-root", "api.example.com", "/", "catalog"),
		routeObj("local-v2", "localhost", "/v2", "catalog"),
	}
	table := NewRouteTable(routes, func(o Object) (string, string) { return o.Spec.(*RouteSpec).Host, o.Spec.(*RouteSpec).PathPrefix })
	if table.Len() != len(routes) {
		t.Errorf("Len %d, want %d", table.Len(), len(routes))
	}
	for _, tt := range []struct{ host, path, want string }{
		{"x.example.com", "/orders", "orders"},
		{"x.example.com", "/orders/", "orders"},
		{"x.example.com", "/ordersx", "all"},
		{"x.example.com", "/orders/1", "orders-1"},
		{"x.example.com", "/orders/1/2", "orders-1"},
		{"x.example.com", "/orders/12", "orders"},
		{"x.example.com", "/", "all"},
		{"api.example.com", "/orders/1", "api-orders"}, // a host Route beats a longer one for any host
		{"api.example.com", "/catalog", "api-root"},
		{"localhost", "/v2/x", "local-v2"},
		{"localhost", "/v3", "all"}, // no Route of the host answers: those for any host do
		{"localhost", "/orders/1", "orders-1"},
	} {
		got, ok := table.Match(tt.host, tt.path)
		if !ok || got.Metadata.Name != tt.want {
			t.Errorf("Match(%q, %q) = %q %v, want %q", tt.host, tt.path, got.Metadata.Name, ok, tt.want)
		}
	}
	var none *RouteTable[Object]
	if _, ok := none.Match("x", "/"); ok || none.Len() != 0 {
		t.Error("a nil table answered")
	}
	if _, ok := NewRouteTable(routes[1:], func(o Object) (string, string) { return o.Spec.(*RouteSpec).Host, o.Spec.(*RouteSpec).PathPrefix }).Match("x", "/catalog"); ok {
		t.Error("a path no Route answers matched")
	}
}

// randomRoutes is a set of Routes with unique host and prefix on a few
// hosts and nested prefixes.
func randomRoutes(r *rand.Rand, n int) []Object {
	hosts := []string{"", "", "api.example.com", "localhost"}
	segs := []string{"a", "b", "ab"}
	seen := map[[2]string]bool{}
	var out []Object
	for len(out) < n {
		prefix := ""
		for range r.IntN(4) {
			prefix += "/" + segs[r.IntN(len(segs))]
		}
		if prefix == "" {
			prefix = "/"
		}
		host := hosts[r.IntN(len(hosts))]
		if seen[[2]string{host, prefix}] {
			continue
		}
		seen[[2]string{host, prefix}] = true
		out = append(out, routeObj(fmt.Sprintf("r%d", r.IntN(3*n)), host, prefix, fmt.Sprintf("s%d", r.IntN(3))))
	}
	// Names are unique in a set.
	slices.SortFunc(out, func(a, b Object) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })
	return slices.CompactFunc(out, func(a, b Object) bool { return a.Metadata.Name == b.Metadata.Name })
}

// TestRouteTableAgreesWithRule: on random sets, the table answers every
// request as the rule says.
func TestRouteTableAgreesWithRule(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	paths := []string{"/", "/a", "/a/", "/b", "/ab", "/a/b", "/a/b/ab", "/a/ab/b/a", "/b/b/b/b", "/c", "/abc"}
	for range 200 {
		routes := randomRoutes(r, 1+r.IntN(8))
		table := NewRouteTable(routes, func(o Object) (string, string) { return o.Spec.(*RouteSpec).Host, o.Spec.(*RouteSpec).PathPrefix })
		for _, host := range []string{"api.example.com", "localhost", "other"} {
			for _, p := range paths {
				got, _ := table.Match(host, p)
				want := matchByRule(routes, host, p)
				if (want == nil) != (got.Metadata.Name == "") || want != nil && want.Metadata.Name != got.Metadata.Name {
					t.Fatalf("Match(%q, %q) = %q, want %v, routes %v", host, p, got.Metadata.Name, want, routes)
				}
			}
		}
	}
}

// TestReroutesFindsEveryMovedRequest: on random pairs of sets, Reroutes
// names exactly the pairs of Routes between which some request moves,
// found by trying every request.
func TestReroutesFindsEveryMovedRequest(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	paths := []string{"/", "/a", "/a/", "/b", "/ab", "/a/b", "/a/b/ab", "/a/ab/b/a", "/b/b/b/b", "/c", "/abc", "/ab/a/b"}
	for range 300 {
		old := randomRoutes(r, 1+r.IntN(6))
		next := slices.Clone(old)
		// Change a few: drop, add, move.
		for range 1 + r.IntN(3) {
			switch i := r.IntN(len(next) + 1); {
			case i == len(next) || r.IntN(2) == 0:
				next = append(next, randomRoutes(r, 1)[0])
				next[len(next)-1].Metadata.Name = fmt.Sprintf("n%d", r.IntN(100))
			default:
				next = slices.Delete(next, i, i+1)
			}
		}
		// Keep the new set valid: one Route per name and per site.
		valid := next[:0:0]
		names, sites := map[string]bool{}, map[[2]string]bool{}
		for _, o := range next {
			s := o.Spec.(*RouteSpec)
			if !names[o.Metadata.Name] && !sites[[2]string{s.Host, s.PathPrefix}] {
				names[o.Metadata.Name], sites[[2]string{s.Host, s.PathPrefix}] = true, true
				valid = append(valid, o)
			}
		}
		next = valid

		want := map[[2]string]bool{}
		for _, host := range []string{"api.example.com", "localhost", "other"} {
			for _, p := range paths {
				b, a := matchByRule(old, host, p), matchByRule(next, host, p)
				if nb, na := routeName(b), routeName(a); nb != na {
					want[[2]string{nb, na}] = true
				}
			}
		}
		got := map[[2]string]bool{}
		for _, rr := range Reroutes(old, next) {
			pair := [2]string{routeName(rr.Before), routeName(rr.After)}
			if got[pair] {
				t.Fatalf("pair %v twice", pair)
			}
			got[pair] = true
			// The request named is one that moves between the two.
			host := rr.Host
			if host == "" {
				host = "other"
			}
			if routeName(matchByRule(old, host, rr.Path)) != pair[0] || routeName(matchByRule(next, host, rr.Path)) != pair[1] {
				t.Fatalf("Reroute %s %s %v does not move that request", rr.Host, rr.Path, pair)
			}
		}
		// Every pair that some tried request shows is found; Reroutes may
		// find more (requests the tried paths miss), never fewer.
		for pair := range want {
			if !got[pair] {
				t.Fatalf("a request moves from %q to %q, Reroutes misses it\nold %v\nnext %v\ngot %v", pair[0], pair[1], old, next, got)
			}
		}
	}
}
