package policy

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/wardsec/ward/internal/resource"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// services declares the services the test policies target.
const services = `apiVersion: ward/v1
kind: Service
metadata: {name: catalog}
spec: {endpoints: ["127.0.0.1:9001"]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {endpoints: ["127.0.0.1:9002"]}
---
apiVersion: ward/v1
kind: Service
metadata: {name: users}
spec: {endpoints: ["127.0.0.1:9003"]}
`

// catalogPolicy lets svc/catalog GET below /catalog/, and gateways check
// /health; it denies everything else.
const catalogPolicy = `
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: catalog-callers}
spec:
  target: catalog
  rules:
  - from: [svc/catalog]
    methods: [GET]
    paths: ["/catalog/*"]
  - from: ["gateway/*"]
    methods: [GET, HEAD]
    paths: [/health]
`

func compile(t testing.TB, docs string) *Engine {
	t.Helper()
	objs, err := resource.Parse("policy.yaml", []byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Compile(td, objs)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func id(s string) spiffeid.ID {
	if s == "" {
		return spiffeid.ID{}
	}
	if !strings.HasPrefix(s, "spiffe://") {
		s = "spiffe://example.org/" + s
	}
	return spiffeid.RequireFromString(s)
}

type decideTest struct {
	name    string
	req     Request
	want    Decision
	message string // the decision's message; unchecked when empty
}

func runDecideTests(t *testing.T, e *Engine, tests []decideTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.Decide(tt.req)
			msg := got.Message
			if tt.message == "" {
				got.Message = ""
			}
			if tt.want.Message = tt.message; got != tt.want {
				t.Errorf("Decide(%+v)\n got  %+v\n want %+v", tt.req, got, tt.want)
			}
			if msg == "" {
				t.Error("decision without a message")
			}
		})
	}
}

// TestDecideAuthorization crosses identities, methods and paths on one
// policy.
func TestDecideAuthorization(t *testing.T) {
	e := compile(t, services+catalogPolicy)
	allowed := func(rule int) Decision {
		return Decision{Allow: true, Policy: "catalog-callers", Rule: rule, Reason: ReasonAllowed}
	}
	denied := Decision{Policy: "catalog-callers", Rule: -1, Reason: ReasonNoRuleMatches}
	req := func(peer, method, path string) Request {
		return Request{Target: "catalog", Peer: id(peer), Method: method, Path: path}
	}
	runDecideTests(t, e, []decideTest{
		{"allowed", req("svc/catalog", "GET", "/catalog/items/1"), allowed(0), "allowed by catalog-callers rule 0"},
		{"prefix itself", req("svc/catalog", "GET", "/catalog/"), allowed(0), ""},
		{"method upper-cased", req("svc/catalog", "get", "/catalog/x"), allowed(0), ""},
		{"resolved into prefix", req("svc/catalog", "GET", "/other/../catalog/x"), allowed(0), ""},
		{"query ignored", req("svc/catalog", "GET", "/catalog/x?next=/admin"), allowed(0), ""},
		{"gateway wildcard", req("gateway/edge", "HEAD", "/health"), allowed(1), ""},
		{"another gateway", req("gateway/internal", "GET", "/health"), allowed(1), ""},

		{"other service", req("svc/orders", "GET", "/catalog/x"), denied,
			"denied by catalog-callers: no rule matches svc/orders GET /catalog/x"},
		{"other method", req("svc/catalog", "POST", "/catalog/x"), denied, ""},
		{"unknown method", req("svc/catalog", "PROPFIND", "/catalog/x"), denied, ""},
		{"no method", req("svc/catalog", "", "/catalog/x"), denied, ""},
		{"prefix without slash", req("svc/catalog", "GET", "/catalog"), denied, ""},
		{"prefix lookalike", req("svc/catalog", "GET", "/catalogue/x"), denied, ""},
		{"case-sensitive", req("svc/catalog", "GET", "/Catalog/x"), denied, ""},
		{"exact is exact", req("gateway/edge", "GET", "/health/"), denied, ""},
		{"exact is not a prefix", req("gateway/edge", "GET", "/health/x"), denied, ""},
		{"gateway below", req("gateway/edge/x", "GET", "/health"), denied, ""},
		{"gateway not the catalog", req("gateway/edge", "GET", "/catalog/x"), denied, ""},
		{"longer ID", req("svc/catalog/admin", "GET", "/catalog/x"), denied, ""},
		{"root ID", req("spiffe://example.org", "GET", "/catalog/x"), denied,
			"denied by catalog-callers: no rule matches spiffe://example.org GET /catalog/x"},
		{"foreign trust domain", req("spiffe://evil.org/svc/catalog", "GET", "/catalog/x"), denied,
			"denied by catalog-callers: no rule matches spiffe://evil.org/svc/catalog GET /catalog/x"},
		{"no identity", req("", "GET", "/catalog/x"), denied,
			"denied by catalog-callers: no rule matches (no identity) GET /catalog/x"},

		{"no policy", Request{Target: "orders", Peer: id("svc/catalog"), Method: "GET", Path: "/"},
			Decision{Rule: -1, Reason: ReasonNoPolicy}, `denied: no policy for service "orders"`},
		{"unknown service", Request{Target: "nope", Peer: id("svc/catalog"), Method: "GET", Path: "/"},
			Decision{Rule: -1, Reason: ReasonNoPolicy}, ""},
		{"ambiguous", req("svc/catalog", "GET", "/catalog/x%2f..%2f..%2fadmin"),
			Decision{Rule: -1, Reason: ReasonAmbiguousPath}, `denied: ambiguous path: encoded '/' or '\'`},
	})
}

// TestDecideEncodings approaches a denied path, /admin, with every encoding
// trick, from the caller that may read /catalog/*: none may be allowed.
func TestDecideEncodings(t *testing.T) {
	e := compile(t, services+catalogPolicy+`  - from: [svc/catalog]
    paths: [/public]
`)
	tricks := []string{
		"/admin", "/admin/", "//admin", "/./admin", "/admin/.", "/ADMIN", "/Admin",
		"/catalog/../admin", "/catalog/./../admin", "/catalog/x/../../admin",
		"/catalog/%2e%2e/admin", "/catalog/%2E%2E/admin", "/catalog/.%2e/admin", "/catalog/%2e./admin",
		"/catalog/..%2fadmin", "/catalog/..%2Fadmin", "/catalog%2f..%2fadmin", "/catalog/%2e%2e%2fadmin",
		"/catalog/%252e%252e/admin", "/catalog/%252e%252e%252fadmin", "/catalog/..%252fadmin", "/catalog/%25%32%65%25%32%65/admin",
		`/catalog/..\admin`, `/catalog\..\admin`, "/catalog/..%5cadmin", "/catalog/..%5Cadmin", "/catalog/%5c../admin",
		"/catalog/..;/admin", "/catalog;x=y/../admin", "/catalog/x;/../../admin", "/admin;/catalog/x", "/catalog/..%3b/admin",
		"/catalog/x%00/../../admin", "/catalog/%00/../../admin", "/admin%00/catalog/x", "/catalog/%0a/../../admin",
		"/catalog/．．/admin", "/catalog/%ef%bc%8e%ef%bc%8e/admin", "/catalog/%EF%BC%8E%EF%BC%8E/admin",
		"/catalog/..%ef%bc%8fadmin", "/catalog/..／admin", "/catalog/‥/admin", "/catalog/%e2%80%a5/admin",
		"/catalog/..∕admin", "/catalog/%c0%ae%c0%ae/admin", "/catalog/%c0%ae%c0%ae%c0%afadmin", "/catalog/..%c0%afadmin",
		"/catalog/..%u2215admin", "/catalog/%u002e%u002e/admin",
		"/catalog//../admin", "/catalog/x//../../admin", "/catalog/#/../../admin",
		"/public/../admin", "/public%2f..%2fadmin", "/public;/../admin",
		"admin", "*", "http://catalog/admin", "/catalog/../../admin", "/..%2fadmin",
	}
	for _, method := range []string{"GET", "get", "POST"} {
		for _, p := range tricks {
			d := e.Decide(Request{Target: "catalog", Peer: id("svc/catalog"), Method: method, Path: p})
			if d.Allow || d.Reason == ReasonAllowed {
				t.Errorf("%s %q allowed: %+v", method, p, d)
			}
		}
	}
	// The tricks do not get in the way of the paths that are allowed.
	for _, p := range []string{"/catalog/x", "/catalog/%78", "/catalog/x/../y", "/catalog//x", "/catalog/./x", "/public"} {
		if d := e.Decide(Request{Target: "catalog", Peer: id("svc/catalog"), Method: "GET", Path: p}); !d.Allow {
			t.Errorf("GET %q denied: %+v", p, d)
		}
	}
}

func TestDecideDryRun(t *testing.T) {
	e := compile(t, services+`
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-trial}
spec:
  target: orders
  mode: dry-run
  rules:
  - from: [svc/catalog]
    paths: ["/orders/*"]
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: users-trial}
spec:
  target: users
  mode: dry-run
  rules:
  - from: ["*"]
    paths: ["/users/*"]
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: users-enforced}
spec:
  target: users
  rules:
  - from: [svc/orders]
    paths: ["/users/*"]
`)
	runDecideTests(t, e, []decideTest{
		{"would allow", Request{Target: "orders", Peer: id("svc/catalog"), Method: "GET", Path: "/orders/1"},
			Decision{Allow: true, DryRun: true, Policy: "orders-trial", Rule: 0, Reason: ReasonAllowed}, ""},
		{"would deny", Request{Target: "orders", Peer: id("svc/users"), Method: "GET", Path: "/orders/1"},
			Decision{Allow: true, DryRun: true, Policy: "orders-trial", Rule: -1, Reason: ReasonNoRuleMatches},
			"not enforced (dry run): denied by orders-trial: no rule matches svc/users GET /orders/1"},
		{"ambiguous paths are refused all the same", Request{Target: "orders", Peer: id("svc/catalog"), Method: "GET", Path: "/orders/%2e%2e%2f"},
			Decision{Rule: -1, Reason: ReasonAmbiguousPath}, ""},
		{"enforced policy decides", Request{Target: "users", Peer: id("svc/catalog"), Method: "GET", Path: "/users/1"},
			Decision{Policy: "users-enforced", Rule: -1, Reason: ReasonNoRuleMatches}, ""},
		{"enforced policy allows", Request{Target: "users", Peer: id("svc/orders"), Method: "GET", Path: "/users/1"},
			Decision{Allow: true, Policy: "users-enforced", Rule: 0, Reason: ReasonAllowed}, ""},
	})
}

func TestDecideSeveralPolicies(t *testing.T) {
	e := compile(t, services+`
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-readers}
spec:
  target: orders
  rules:
  - from: [svc/catalog]
    methods: [GET]
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-writers}
spec:
  target: orders
  rules:
  - from: [gateway/edge]
    methods: [POST]
    paths: [/orders/]
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-closed}
spec:
  target: orders
  rules: []
`)
	req := func(peer, method string) Request {
		return Request{Target: "orders", Peer: id(peer), Method: method, Path: "/orders/"}
	}
	runDecideTests(t, e, []decideTest{
		{"first allows", req("svc/catalog", "GET"), Decision{Allow: true, Policy: "orders-readers", Rule: 0, Reason: ReasonAllowed}, ""},
		{"second allows", req("gateway/edge", "POST"), Decision{Allow: true, Policy: "orders-writers", Rule: 0, Reason: ReasonAllowed}, ""},
		{"none allows", req("gateway/edge", "DELETE"), Decision{Policy: "orders-closed,orders-readers,orders-writers", Rule: -1, Reason: ReasonNoRuleMatches},
			"denied by orders-closed,orders-readers,orders-writers: no rule matches gateway/edge DELETE /orders/"},
	})
}

func TestDecideConditions(t *testing.T) {
	e := compile(t, services+`
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
  - from: [gateway/edge]
    methods: [GET]
    paths: ["/orders/*"]
    when: 'user.scopes.exists(s, s == "orders:read")'
  - from: [gateway/edge]
    paths: ["/tenant/*"]
    when: >-
      request.headers["x-tenant"] == "acme" && request.method == "PUT" &&
      request.path.startsWith("/tenant/acme/") && peer.path == "/gateway/edge" &&
      peer.trust_domain == "example.org" && peer.id == "spiffe://example.org/gateway/edge"
  - from: [gateway/edge]
    paths: [/flag]
    when: user.admin
  - from: [gateway/edge]
    paths: [/cost]
    when: user.items.all(x, user.items.all(y, user.items.all(z, x + y + z >= 0)))
  - from: [gateway/edge]
    paths: [/late]
`)
	edge := id("gateway/edge")
	items := make([]any, 100)
	for i := range items {
		items[i] = int64(i)
	}
	runDecideTests(t, e, []decideTest{
		{"claim present", Request{Target: "orders", Peer: edge, Method: "GET", Path: "/orders/1", Claims: map[string]any{"scopes": []any{"a", "orders:read"}}},
			Decision{Allow: true, Policy: "orders-callers", Rule: 0, Reason: ReasonAllowed}, ""},
		{"claim wrong", Request{Target: "orders", Peer: edge, Method: "GET", Path: "/orders/1", Claims: map[string]any{"scopes": []string{"orders:write"}}},
			Decision{Policy: "orders-callers", Rule: -1, Reason: ReasonNoRuleMatches}, ""},
		{"claim missing", Request{Target: "orders", Peer: edge, Method: "GET", Path: "/orders/1"},
			Decision{Policy: "orders-callers", Rule: 0, Reason: ReasonConditionError},
			"denied by orders-callers: condition of rule 0 failed: no such key: scopes"},
		{"claim of the wrong type", Request{Target: "orders", Peer: edge, Method: "GET", Path: "/orders/1", Claims: map[string]any{"scopes": "orders:read"}},
			Decision{Policy: "orders-callers", Rule: 0, Reason: ReasonConditionError}, ""},
		{"request and peer", Request{Target: "orders", Peer: edge, Method: "put", Path: "/tenant/acme/1", Header: http.Header{"X-Tenant": {"acme"}}},
			Decision{Allow: true, Policy: "orders-callers", Rule: 1, Reason: ReasonAllowed}, ""},
		{"header differs", Request{Target: "orders", Peer: edge, Method: "PUT", Path: "/tenant/acme/1", Header: http.Header{"X-Tenant": {"acme", "evil"}}},
			Decision{Policy: "orders-callers", Rule: -1, Reason: ReasonNoRuleMatches}, ""},
		{"header missing", Request{Target: "orders", Peer: edge, Method: "PUT", Path: "/tenant/acme/1"},
			Decision{Policy: "orders-callers", Rule: 1, Reason: ReasonConditionError}, ""},
		{"dyn true", Request{Target: "orders", Peer: edge, Method: "GET", Path: "/flag", Claims: map[string]any{"admin": true}},
			Decision{Allow: true, Policy: "orders-callers", Rule: 2, Reason: ReasonAllowed}, ""},
		{"dyn not a bool", Request{Target: "orders", Peer: edge, Method: "GET", Path: "/flag", Claims: map[string]any{"admin": "yes"}},
			Decision{Policy: "orders-callers", Rule: 2, Reason: ReasonConditionError},
			"denied by orders-callers: condition of rule 2 failed: condition is a string, not a bool"},
		{"cost exceeded", Request{Target: "orders", Peer: edge, Method: "GET", Path: "/cost", Claims: map[string]any{"items": items}},
			Decision{Policy: "orders-callers", Rule: 3, Reason: ReasonConditionError}, ""},
		{"cheap enough", Request{Target: "orders", Peer: edge, Method: "GET", Path: "/cost", Claims: map[string]any{"items": items[:3]}},
			Decision{Allow: true, Policy: "orders-callers", Rule: 3, Reason: ReasonAllowed}, ""},
		{"a later rule allows despite an error", Request{Target: "orders", Peer: edge, Method: "GET", Path: "/late"},
			Decision{Allow: true, Policy: "orders-callers", Rule: 4, Reason: ReasonAllowed}, ""},
	})
}

func TestCompileErrors(t *testing.T) {
	policy := services + `
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: p}
spec:
  target: orders
  rules:
  - from: ["*"]
    paths: [/ok, "/a/../b", "/x%2fy", "/a%41/*", "/q?x"]
    when: request.method ==
  - from: ["*"]
    when: request.methd == "GET"
  - from: ["*"]
    when: '"yes"'
  - from: ["*"]
    when: user.x == 1 && 'a'
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: q}
spec:
  target: nowhere
  rules:
  - from: ["*"]
    when: size(
`
	want := `policy.yaml:24: spec.rules[0].paths[1]: path "/a/../b" is not canonical: write "/b"
policy.yaml:24: spec.rules[0].paths[2]: path "/x%2fy" can never match: requests with it are refused: ambiguous path: encoded '/' or '\'
policy.yaml:24: spec.rules[0].paths[3]: path "/a%41/*" is not canonical: write "/aA/*"
policy.yaml:24: spec.rules[0].paths[4]: path "/q?x" is not canonical: write "/q"
policy.yaml:25: spec.rules[0].when: invalid condition: 1:18: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}
policy.yaml:27: spec.rules[1].when: invalid condition: 1:8: undefined field 'methd'
policy.yaml:29: spec.rules[2].when: invalid condition: it is a string, not a bool
policy.yaml:31: spec.rules[3].when: invalid condition: 1:16: expected type 'bool' but found 'string'
policy.yaml:37: spec.target: no Service named "nowhere"
policy.yaml:40: spec.rules[0].when: invalid condition: 1:6: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', ')', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}`
	objs, err := resource.Parse("policy.yaml", []byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Compile(td, objs)
	if e != nil || err == nil || err.Error() != want {
		t.Errorf("Compile = %v, error:\n%v\nwant:\n%s", e, err, want)
	}
	var list resource.ErrorList
	if !errors.As(err, &list) || len(list) != 10 {
		t.Errorf("Compile error is not a list of 10 problems: %#v", err)
	}
	if _, err := Compile(spiffeid.TrustDomain{}, objs); err == nil {
		t.Error("Compile without a trust domain succeeded")
	}
	if e, err := Compile(td, nil); err != nil || e.Decide(Request{Target: "orders", Path: "/"}).Reason != ReasonNoPolicy {
		t.Errorf("Compile(nil) = %v, %v; want an engine that denies", e, err)
	}
}

// TestDecideConcurrent shares one engine between goroutines, conditions
// included (run with -race).
func TestDecideConcurrent(t *testing.T) {
	e := compile(t, services+`
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
  - from: ["*"]
    when: request.headers["x-n"] == user.n
`)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				n := strconv.Itoa(i*1000 + j)
				d := e.Decide(Request{Target: "orders", Peer: id("svc/a"), Method: "GET", Path: "/" + n,
					Header: http.Header{"X-N": {n}}, Claims: map[string]any{"n": n}})
				if !d.Allow {
					t.Errorf("request %s denied: %+v", n, d)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestDecideAllocs(t *testing.T) {
	e := compile(t, services+catalogPolicy)
	req := Request{Target: "catalog", Peer: id("svc/catalog"), Method: "GET", Path: "/catalog/items/42"}
	if n := testing.AllocsPerRun(100, func() { e.Decide(req) }); n != 0 {
		t.Errorf("Decide allocates %v times for a rule without condition", n)
	}
}

func BenchmarkDecide(b *testing.B) {
	e := compile(b, services+catalogPolicy+`
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
  - from: [gateway/edge]
    methods: [GET]
    paths: ["/orders/*"]
    when: 'user.scopes.exists(s, s == "orders:read")'
`)
	catalog, edge := id("svc/catalog"), id("gateway/edge")
	claims := map[string]any{"scopes": []any{"profile", "orders:read"}}
	for _, bb := range []struct {
		name string
		req  Request
	}{
		{"allow", Request{Target: "catalog", Peer: catalog, Method: "GET", Path: "/catalog/items/42"}},
		{"allow-second-rule", Request{Target: "catalog", Peer: edge, Method: "HEAD", Path: "/health"}},
		{"allow-normalized", Request{Target: "catalog", Peer: catalog, Method: "GET", Path: "/catalog/a%20b/./c//d"}},
		{"deny", Request{Target: "catalog", Peer: edge, Method: "GET", Path: "/admin"}},
		{"ambiguous", Request{Target: "catalog", Peer: catalog, Method: "GET", Path: "/catalog/..%2fadmin"}},
		{"cel", Request{Target: "orders", Peer: edge, Method: "GET", Path: "/orders/1", Claims: claims}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.Decide(bb.req)
			}
		})
	}
}

// TestRouteCondition checks a Route's auth.when: compiled with the set,
// located by file and line when it does not compile, and failing closed.
func TestRouteCondition(t *testing.T) {
	const src = `apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {endpoints: ["127.0.0.1:1"]}
---
apiVersion: ward/v1
kind: Route
metadata: {name: r}
spec:
  pathPrefix: /orders
  service: orders
  auth: {apiKey: none, user: anonymous, when: '%s'}
`
	compile := func(cond string) (*Engine, error) {
		objs, err := resource.Parse("routes.yaml", []byte(fmt.Sprintf(src, cond)))
		if err != nil {
			t.Fatal(err)
		}
		return Compile(spiffeid.RequireTrustDomainFromString("example.org"), objs)
	}
	e, err := compile(`"orders:read" in user.scopes && request.method == "GET"`)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Target: "orders", Method: "GET", Path: "/orders/1", Claims: map[string]any{"scopes": []string{"orders:read"}}}
	if ok, err := e.RouteCondition("r", req); !ok || err != nil {
		t.Errorf("with the scope: %v, %v; want true", ok, err)
	}
	req.Claims = map[string]any{"scopes": []string{"catalog:read"}}
	if ok, _ := e.RouteCondition("r", req); ok {
		t.Error("without the scope: true, want false")
	}
	req.Claims = nil // no scopes at all: an evaluation error, which must not hold
	if ok, err := e.RouteCondition("r", req); ok || err == nil {
		t.Errorf("without claims: %v, %v; want false and an error", ok, err)
	}
	if ok, err := e.RouteCondition("other", req); !ok || err != nil {
		t.Errorf("route without a condition: %v, %v; want true", ok, err)
	}
	if _, err := compile(`user.scopes.exists(s, s ==`); err == nil || !strings.Contains(err.Error(), "routes.yaml:12: spec.auth.when: invalid condition") {
		t.Errorf("bad condition: %v", err)
	}
}

// TestPathsCaseInsensitive (issue 12 finding 11): a rule with
// pathsCaseInsensitive matches its paths whatever the case of ASCII
// letters, for apps that fold case; rules without it stay case-sensitive,
// and folding never lets a path through that differs in anything but case.
func TestPathsCaseInsensitive(t *testing.T) {
	e := compile(t, services+`
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-callers}
spec:
  target: orders
  rules:
  - from: [svc/catalog]
    methods: [GET]
    paths: ["/Orders/*", /Health, "/caf%C3%A9"]
    pathsCaseInsensitive: true
  - from: [svc/users]
    paths: ["/orders/*"]
`)
	allowed := Decision{Allow: true, Policy: "orders-callers", Rule: 0, Reason: ReasonAllowed}
	denied := Decision{Policy: "orders-callers", Rule: -1, Reason: ReasonNoRuleMatches}
	req := func(peer, path string) Request {
		return Request{Target: "orders", Peer: id(peer), Method: "GET", Path: path}
	}
	runDecideTests(t, e, []decideTest{
		{"same case", req("svc/catalog", "/Orders/1"), allowed, ""},
		{"lower case", req("svc/catalog", "/orders/1"), allowed, ""},
		{"upper case", req("svc/catalog", "/ORDERS/"), allowed, ""},
		{"mixed case below", req("svc/catalog", "/oRdErS/Items/X"), allowed, ""},
		{"percent-encoded letters", req("svc/catalog", "/%6frders/1"), allowed, ""},
		{"exact path", req("svc/catalog", "/HEALTH"), allowed, ""},
		{"encoded hex case", req("svc/catalog", "/CAF%c3%a9"), allowed, ""},

		{"exact stays exact", req("svc/catalog", "/health/"), denied, ""},
		{"prefix without slash", req("svc/catalog", "/ORDERS"), denied, ""},
		{"lookalike", req("svc/catalog", "/ordersx/1"), denied, ""},
		{"non-ASCII case is not folded", req("svc/catalog", "/caf%C3%89"), denied, ""},
		{"dotless i is not i", req("svc/catalog", "/health%C4%B1"), denied, ""},
		{"Kelvin sign is not k", req("svc/catalog", "/%E2%84%AA"), denied, ""},
		{"other rule stays case-sensitive", req("svc/users", "/Orders/1"), denied, ""},
		{"other rule exact case", Request{Target: "orders", Peer: id("svc/users"), Method: "POST", Path: "/orders/1"},
			Decision{Allow: true, Policy: "orders-callers", Rule: 1, Reason: ReasonAllowed}, ""},
	})
}

// TestFromDoesNotMatchByPrefix (issue 19 item 1): a from entry names a
// caller segment by segment, exactly: a caller whose name merely starts
// with an allowed one, or continues below it, is not that caller.
func TestFromDoesNotMatchByPrefix(t *testing.T) {
	e := compile(t, services+catalogPolicy)
	denied := Decision{Policy: "catalog-callers", Rule: -1, Reason: ReasonNoRuleMatches}
	req := func(peer, path string) Request {
		return Request{Target: "catalog", Peer: id(peer), Method: "GET", Path: path}
	}
	runDecideTests(t, e, []decideTest{
		{"the caller itself", req("svc/catalog", "/catalog/x"),
			Decision{Allow: true, Policy: "catalog-callers", Rule: 0, Reason: ReasonAllowed}, ""},
		{"name with a suffix", req("svc/catalog-evil", "/catalog/x"), denied,
			"denied by catalog-callers: no rule matches svc/catalog-evil GET /catalog/x"},
		{"longer word", req("svc/catalogue", "/catalog/x"), denied, ""},
		{"shorter name", req("svc/catalo", "/catalog/x"), denied, ""},
		{"namespace with a suffix", req("svcx/catalog", "/catalog/x"), denied, ""},
		{"below the caller", req("svc/catalog/x", "/catalog/x"), denied, ""},
		{"wildcard segment, prefixed gateway namespace", req("gatewayx/edge", "/health"), denied, ""},
	})
}
