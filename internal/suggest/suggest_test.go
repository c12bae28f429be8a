package suggest

import (
	"reflect"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/flows"
	"github.com/wardsec/ward/internal/policy"
	"github.com/wardsec/ward/internal/resource"
)

func edge(src, method, path, decision string) flows.Record {
	return flows.Record{Key: flows.Key{Source: src, Dest: "orders", Method: method, Path: path, Decision: decision, Class: 2}, Count: 3}
}

const currentSet = `apiVersion: ward/v1
kind: Service
metadata: {name: orders}
spec: {endpoints: ["127.0.0.1:9443"]}
---
apiVersion: ward/v1
kind: AccessPolicy
metadata: {name: orders-open}
spec:
  target: orders
  rules:
    - from: ["*"]
`

func TestSuggestAdmitsExactlyTheObservedTraffic(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	current, err := resource.Parse("current.yaml", []byte(currentSet))
	if err != nil {
		t.Fatal(err)
	}
	edges := []flows.Record{
		edge("svc/catalog", "GET", "/orders/{id}", flows.Allow),
		edge("svc/catalog", "GET", "/orders/{id}/items", flows.Allow), // covered by /orders/*
		edge("svc/catalog", "GET", "/orders", flows.Allow),
		edge("gateway/edge", "GET", "/orders/{id}", flows.Allow),
		edge("gateway/edge", "GET", "/orders", flows.Allow),
		edge("gateway/edge", "POST", "/orders", flows.WouldDeny),
		edge("svc/billing", "DELETE", "/orders/{id}", flows.Deny), // refused: not admitted
		edge("public", "GET", "/orders", flows.Allow),             // not a mesh identity
	}
	got := Suggest(edges, current, "")
	if len(got) != 1 {
		t.Fatalf("%d suggestions, want 1: %+v", len(got), got)
	}
	spec := got[0].Spec.(*resource.AccessPolicySpec)
	if got[0].Metadata.Name != "orders-open" || spec.Target != "orders" || spec.Mode != resource.ModeEnforce {
		t.Errorf("suggestion %s for %s in mode %s, want orders-open for orders, enforce (the current policy's)", got[0].Metadata.Name, spec.Target, spec.Mode)
	}
	want := []resource.Rule{
		{From: []string{"gateway/edge"}, Methods: []string{"GET", "POST"}, Paths: []string{"/orders"}},
		{From: []string{"gateway/edge"}, Methods: []string{"GET"}, Paths: []string{"/orders/*"}},
		{From: []string{"svc/catalog"}, Methods: []string{"GET"}, Paths: []string{"/orders", "/orders/*"}},
	}
	if !reflect.DeepEqual(spec.Rules, want) {
		t.Errorf("rules:\n got %+v\nwant %+v", spec.Rules, want)
	}

	denied, err := Replay(td, current, got, edges)
	if err != nil {
		t.Fatal(err)
	}
	if len(denied) != 0 {
		t.Errorf("the suggestion would deny observed traffic: %+v", denied)
	}

	eng, err := policy.Compile(td, Replace(current, got))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from, method, path string
		allow              bool
	}{
		{"svc/catalog", "GET", "/orders/7", true},
		{"svc/catalog", "GET", "/orders", true},
		{"gateway/edge", "POST", "/orders", true},
		{"svc/catalog", "POST", "/orders", false},     // a method not seen from this caller
		{"svc/catalog", "DELETE", "/orders/1", false}, // a method never seen
		{"svc/billing", "DELETE", "/orders/1", false}, // was refused: stays refused
		{"svc/billing", "GET", "/orders", false},      // a caller never seen
		{"gateway/edge", "GET", "/admin", false},      // a path never seen
	} {
		d := eng.Decide(policy.Request{Target: "orders", Peer: spiffeid.RequireFromPath(td, "/"+c.from), Method: c.method, Path: c.path})
		if d.Allow != c.allow {
			t.Errorf("%s %s %s: allow %v (%s), want %v", c.from, c.method, c.path, d.Allow, d.Message, c.allow)
		}
	}
}

func TestSuggestNewServiceIsDryRun(t *testing.T) {
	got := Suggest([]flows.Record{edge("svc/catalog", "GET", "/orders", flows.WouldDeny)}, nil, "orders")
	if len(got) != 1 || got[0].Metadata.Name != "orders-callers" || got[0].Spec.(*resource.AccessPolicySpec).Mode != resource.ModeDryRun {
		t.Fatalf("suggestion for a service without policy: %+v", got)
	}
	if got := Suggest([]flows.Record{edge("svc/catalog", "GET", "/orders", flows.Allow)}, nil, "billing"); len(got) != 0 {
		t.Errorf("suggestions for another service than asked: %+v", got)
	}
}

func TestPattern(t *testing.T) {
	for in, want := range map[string]string{
		"/orders":            "/orders",
		"/orders/{id}":       "/orders/*",
		"/orders/{id}/items": "/orders/*",
		"/{id}":              "/*",
		"/a/b/{rest}":        "/a/b/*",
		flows.OtherPath:      "/*",
	} {
		if got := Pattern(in); got != want {
			t.Errorf("Pattern(%q) = %q, want %q", in, got, want)
		}
	}
}
