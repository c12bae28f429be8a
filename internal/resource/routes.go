package resource

import (
	"cmp"
	"slices"
	"strings"
)

// RouteTable finds the Route that answers a request. The gateway routes
// with it, and the control plane checks with it what a change of the set
// would route elsewhere ([Reroutes]), so that the two can never disagree.
//
// The rule: Routes naming the request's host take precedence over Routes
// for any host; among them the longest PathPrefix under which the path
// lies wins ("/orders" answers /orders and /orders/..., not /ordersx; "/"
// answers every path).
type RouteTable[T any] struct {
	byHost  map[string]map[string]T // host -> prefix -> item
	anyHost map[string]T            // prefix -> item, for Routes without a host
	n       int
}

// NewRouteTable indexes items by the host ("" for any host) and path
// prefix that key returns for each. A valid set has one Route per host and
// prefix; should items hold more, the first one counts.
func NewRouteTable[T any](items []T, key func(T) (host, prefix string)) *RouteTable[T] {
	t := &RouteTable[T]{byHost: map[string]map[string]T{}, anyHost: map[string]T{}}
	for _, it := range items {
		host, prefix := key(it)
		m := t.anyHost
		if host != "" {
			if m = t.byHost[host]; m == nil {
				m = map[string]T{}
				t.byHost[host] = m
			}
		}
		if _, dup := m[prefix]; !dup {
			m[prefix] = it
			t.n++
		}
	}
	return t
}

// Len is the number of Routes in the table.
func (t *RouteTable[T]) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// Match returns the item whose Route answers host (lowercase, without port
// or final dot) and the normalized path, and whether one does. A nil table
// answers nothing.
func (t *RouteTable[T]) Match(host, path string) (T, bool) {
	if t == nil {
		var zero T
		return zero, false
	}
	if m := t.byHost[host]; m != nil {
		if it, ok := longestPrefix(m, path); ok {
			return it, true
		}
	}
	return longestPrefix(t.anyHost, path)
}

// longestPrefix looks up path, then each of its ancestors from the longest
// to "/": the prefixes under which path lies, longest first.
func longestPrefix[T any](m map[string]T, path string) (T, bool) {
	if len(m) > 0 {
		for p := path; p != ""; {
			if it, ok := m[p]; ok {
				return it, true
			}
			i := strings.LastIndexByte(p, '/')
			switch {
			case i > 0:
				p = p[:i]
			case p != "/":
				p = "/"
			default:
				p = ""
			}
		}
	}
	var zero T
	return zero, false
}

// PrefixCovers reports whether every path under prefix inner lies under
// prefix outer too: outer is inner or one of its ancestors.
func PrefixCovers(outer, inner string) bool {
	return outer == "/" || inner == outer || strings.HasPrefix(inner, outer) && inner[len(outer)] == '/'
}

// Reroute is a set of requests that a change of the resource set sends to
// another Route (or to none, or from none), named by one of them.
type Reroute struct {
	// Host is the request's host; "" stands for every host that no Route
	// names.
	Host string
	// Path is a path of the requests.
	Path string
	// Before and After are the Routes that answer the requests in the old
	// set and in the new one; nil when none does.
	Before, After *Object
}

// Reroutes returns the requests that the Routes of next answer otherwise
// than those of old: one Reroute per pair of Routes (Before, After) that
// differ by name, in the order of host and path. A Route that keeps its
// name, host and prefix moves no request, whatever else of it changes.
//
// Only the requests a changed Route answers, before or after, can move.
// Those fall into finitely many classes: for a Route with host H and
// prefix P, the path P itself and each prefix of the sets under P, on host
// H (or, for a Route without a host, on a host no Route names: on a named
// host, the requests that no Route of that host answers are routed as on
// such a host, and the others only move if a Route of that host changed).
// Each class is routed alike, so checking one request of each is exact.
func Reroutes(old, next []Object) []Reroute {
	routes := func(objs []Object) []*Object {
		var out []*Object
		for i := range objs {
			if _, ok := objs[i].Spec.(*RouteSpec); ok && objs[i].Kind == KindRoute {
				out = append(out, &objs[i])
			}
		}
		return out
	}
	type site struct{ host, prefix string }
	key := func(o *Object) (string, string) {
		s := o.Spec.(*RouteSpec)
		return s.Host, s.PathPrefix
	}
	before, after := routes(old), routes(next)
	oldT, newT := NewRouteTable(before, key), NewRouteTable(after, key)

	// The sites whose Route changed name, appeared or went, and every
	// prefix by host ("" for any host).
	named := map[site]string{}
	for _, o := range before {
		h, p := key(o)
		named[site{h, p}] = o.Metadata.Name
	}
	var changed []site
	prefixes := map[string][]string{}
	seen := map[site]bool{}
	for _, o := range after {
		h, p := key(o)
		s := site{h, p}
		if name, ok := named[s]; !ok || name != o.Metadata.Name {
			changed = append(changed, s)
		}
		seen[s] = true
		prefixes[h] = append(prefixes[h], p)
	}
	for _, o := range before {
		h, p := key(o)
		if s := (site{h, p}); !seen[s] {
			changed = append(changed, s)
			prefixes[h] = append(prefixes[h], p)
		}
	}
	for _, ps := range prefixes {
		slices.Sort(ps)
	}

	// Every class of requests a changed site answers, once.
	var out []Reroute
	pairs := map[[2]string]bool{}
	checked := map[site]bool{}
	check := func(host, path string) {
		if checked[site{host, path}] {
			return
		}
		checked[site{host, path}] = true
		b, _ := oldT.Match(host, path)
		a, _ := newT.Match(host, path)
		nb, na := routeName(b), routeName(a)
		if nb == na || pairs[[2]string{nb, na}] {
			return
		}
		pairs[[2]string{nb, na}] = true
		out = append(out, Reroute{Host: host, Path: path, Before: b, After: a})
	}
	for _, s := range changed {
		check(s.host, s.prefix)
		hosts := []string{""}
		if s.host != "" {
			hosts = append(hosts, s.host)
		}
		for _, h := range hosts {
			for _, p := range under(prefixes[h], s.prefix) {
				check(s.host, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b Reroute) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Path, b.Path))
	})
	return out
}

func routeName(o *Object) string {
	if o == nil {
		return ""
	}
	return o.Metadata.Name
}

// under returns the prefixes of sorted (ascending) that lie under prefix.
func under(sorted []string, prefix string) []string {
	if prefix == "/" {
		return sorted
	}
	var out []string
	if _, ok := slices.BinarySearch(sorted, prefix); ok {
		out = append(out, prefix)
	}
	i, _ := slices.BinarySearch(sorted, prefix+"/")
	for ; i < len(sorted) && strings.HasPrefix(sorted[i], prefix+"/"); i++ {
		out = append(out, sorted[i])
	}
	return out
}
